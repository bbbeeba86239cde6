"""The database layer: engines that speak pgvector, the embedded server, bulk writes and error translation.

- :mod:`~vectorpg.db.engine`: the psycopg 3 engine, vector type registration, raw connections;
- :mod:`~vectorpg.db.server`: the embedded PostgreSQL + pgvector (the ``vectorpg[server]`` extra);
- :mod:`~vectorpg.db.writes`: batches of rows by multi-row INSERT or binary COPY, all-or-nothing;
- :mod:`~vectorpg.db.copy_stream`: the binary COPY stream of a batch, built column by column;
- :mod:`~vectorpg.db.rows`: a model's rows validated and laid out for a write;
- :mod:`~vectorpg.db.translate`: driver errors turned into typed vectorpg errors.

Nothing here knows about collections, searches or :class:`vectorpg.Database`: it takes engines and
connections.
"""
