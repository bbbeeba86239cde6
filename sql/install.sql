-- Install (or upgrade) vectorpg in the current database from psql:
--
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/install.sql
--
-- Other drivers: run CREATE EXTENSION, then the text of schema.sql, then that of functions.sql.
-- Everything is idempotent. `alembic upgrade head` (alembic.ini at the top level) applies the same files.
CREATE EXTENSION IF NOT EXISTS vector;
DO $$
BEGIN
    IF string_to_array((SELECT extversion FROM pg_extension WHERE extname = 'vector'), '.')::int[] < '{0,8,0}' THEN
        RAISE EXCEPTION 'vectorpg needs pgvector >= 0.8.0 (iterative index scans)'
            USING HINT = 'install a newer pgvector on the server, then run: ALTER EXTENSION vector UPDATE;';
    END IF;
END $$;
\ir schema.sql
\ir functions.sql
