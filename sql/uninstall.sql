-- Remove vectorpg from the current database: every collection, document, index and function.
-- The pgvector extension stays (other tables may use it).
--
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/uninstall.sql
DROP SCHEMA IF EXISTS vectorpg CASCADE;
