"""vectorpg's own migrations (its schema: the store's tables and the SQL functions).

Installed, they are the package ``vectorpg.migrations``, so that an application can keep them in its own
Alembic history (a separate base, branch label ``vectorpg``) with one line of its ``alembic.ini``::

    path_separator = space
    version_locations = %(here)s/migrations/versions vectorpg.migrations:

Alembic reads every ``*.py`` here but this file as a revision.
"""
