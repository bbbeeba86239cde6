"""vectorpg's own schema: its tables (:mod:`~vectorpg.own_schema.tables`), the SQL scripts in ``sql/`` that
render them and add the SQL functions (:mod:`~vectorpg.own_schema.scripts`), and installing both
(:mod:`~vectorpg.own_schema.install`)."""
