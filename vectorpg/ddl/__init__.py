"""Schema changes on users' tables and vectorpg's own: vector index builds, partitioning, tenancy.

- :mod:`~vectorpg.ddl.builds`: create / drop / reindex vector indexes, with progress;
- :mod:`~vectorpg.ddl.partitioning`: LIST / RANGE / HASH partitions, indexes on every partition;
- :mod:`~vectorpg.ddl.tenancy`: row-level security by tenant, and sessions bound to one tenant.

Index *specs* (values that render to SQL and are read back from the catalog) live in
:mod:`vectorpg.indexes`.
"""
