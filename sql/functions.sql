-- vectorpg's SQL functions: the store API without Python, for psql and any language's driver.
--
--   vectorpg.create_collection(name, dimension, metric, embedder)   the registry row and the partition
--   vectorpg.drop_collection(name)                                  both removed; true if it existed
--   vectorpg.search(collection, query, k, filter)                   k nearest documents matching a filter
--   vectorpg.hybrid_search(collection, query_text, query, k, filter, rrf_k, config)
--   vectorpg.filter_sql(filter)                                     the WHERE clause a filter compiles to
--   vectorpg.search_table(table, vector_column, query, k, filter, metric)   the same over an app's own table
--   vectorpg.hybrid_search_table(table, vector_column, text_column, query_text, query, k, filter, ...)
--
-- The filter language is the Python store API's (vectorpg/filters.py): same keys, operators, semantics
-- and errors. Nothing a caller passes is ever spliced into SQL: identifiers go through format('%I'),
-- values travel as the parameters of EXECUTE ... USING (filter values as elements of one jsonb[] array,
-- passed as $2 and read once through a MATERIALIZED CTE, see filter_value), and every key, operator and
-- name is validated first (SQLSTATE 22023 otherwise), as are the filter's size limits.
--
-- The planner is vectorpg/planner.py's, as far as SQL can express it: exact over the matching rows
-- when at most 2,000 match (counted, not estimated), the collection's vector index otherwise with an
-- iterative scan (relaxed order, re-sorted by exact distance), and the exact plan again whenever an
-- index scan comes back with fewer than k rows while k or more match. Settings are changed with
-- set_config(..., true) and restored before the function returns.
--
-- This file is applied by Database.setup(), by the Alembic migrations (alembic/) and by sql/install.sql;
-- every statement is idempotent (CREATE OR REPLACE).

-- -- collections --------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION vectorpg.check_collection_name(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z][A-Za-z0-9_-]*$' OR length(name) > 48 THEN
        RAISE EXCEPTION 'invalid collection name %: use a letter followed by letters, digits, ''_'' or ''-'', at most 48 characters',
            coalesce(quote_literal(name), 'NULL') USING ERRCODE = '22023';
    END IF;
    RETURN name;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.create_collection(
    name text, dimension int, metric text DEFAULT 'cosine', embedder text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql AS $$
-- Create a collection: its row in vectorpg.collections and its partition of vectorpg.documents, with a
-- CHECK on the dimension (and, under cosine, one that refuses zero vectors). Returns false (and changes nothing) if it exists with the same dimension and
-- metric; raises if it exists with others. Serialised per name by an advisory lock.
DECLARE
    found_dimension int;
    found_metric text;
BEGIN
    PERFORM vectorpg.check_collection_name(name);
    IF dimension IS NULL OR dimension < 1 OR dimension > 16000 THEN
        RAISE EXCEPTION 'dimension must be an integer from 1 to 16000, got %', coalesce(dimension::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF metric IS NULL OR metric NOT IN ('cosine', 'l2', 'inner_product', 'l1') THEN
        RAISE EXCEPTION 'unknown metric %: use cosine, l2, inner_product or l1', coalesce(quote_literal(metric), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vectorpg:' || name));
    SELECT c.dimension, c.metric INTO found_dimension, found_metric FROM vectorpg.collections c WHERE c.name = $1;
    IF FOUND THEN
        IF found_dimension <> dimension OR found_metric <> metric THEN
            RAISE EXCEPTION 'collection % exists with dimension % and metric %, not % and %',
                quote_literal(name), found_dimension, found_metric, dimension, metric USING ERRCODE = '42P07';
        END IF;
        RETURN false;
    END IF;
    INSERT INTO vectorpg.collections (name, dimension, metric, embedder) VALUES ($1, $2, $3, $4);
    EXECUTE format(
        'CREATE TABLE %I.%I PARTITION OF vectorpg.documents '
        '(CONSTRAINT embedding_dimension CHECK (vector_dims(embedding) = %s)) FOR VALUES IN (%L)',
        'vectorpg', 'documents_' || name, dimension, name);
    IF metric = 'cosine' THEN  -- a zero vector has no direction: no cosine distance, whoever writes it
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT embedding_nonzero CHECK (vector_norm(embedding) > 0)',
                       'vectorpg', 'documents_' || name);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = 'vectorpg.documents'::regclass)
       OR (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = 'vectorpg.documents'::regclass) THEN
        PERFORM vectorpg.sync_partition_security('vectorpg.documents',  -- tenants stay apart here too
                                                 format('%I.%I', 'vectorpg', 'documents_' || name)::regclass);
    END IF;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.schema_version() RETURNS int
LANGUAGE sql IMMUTABLE AS $$
-- The version of vectorpg's schema these scripts install (vectorpg.schema.SCHEMA_VERSION). Database.setup()
-- applies nothing when it already matches, so a role that does not own the schema can use the store.
SELECT 5
$$;

CREATE OR REPLACE FUNCTION vectorpg.sync_partition_security(parent regclass, only_partition regclass DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql AS $$
-- Give the partitions of parent (all of them, or only_partition) the parent's row-level security: ENABLE /
-- FORCE and the same policies (replaced, so it is idempotent). PostgreSQL applies a parent's policies only
-- to queries through the parent; a query that names a partition (as vectorpg's searches do) obeys the
-- partition's own. Returns the number of partitions updated. Run by the tables' owner. Each partition
-- touched is locked ACCESS EXCLUSIVE until the transaction ends: a new partition passes only_partition.
DECLARE
    part regclass;
    pol record;
    secured boolean;
    forced boolean;
    touched int := 0;
BEGIN
    SELECT c.relrowsecurity, c.relforcerowsecurity INTO secured, forced FROM pg_class c WHERE c.oid = parent;
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i
                WHERE i.inhparent = parent AND (only_partition IS NULL OR i.inhrelid = only_partition) LOOP
        EXECUTE format('ALTER TABLE %s %s ROW LEVEL SECURITY', part, CASE WHEN secured THEN 'ENABLE' ELSE 'DISABLE' END);
        EXECUTE format('ALTER TABLE %s %s ROW LEVEL SECURITY', part, CASE WHEN forced THEN 'FORCE' ELSE 'NO FORCE' END);
        FOR pol IN SELECT p.polname FROM pg_policy p WHERE p.polrelid = part LOOP
            EXECUTE format('DROP POLICY %I ON %s', pol.polname, part);
        END LOOP;
        FOR pol IN
            SELECT p.polname, p.polpermissive, p.polcmd, p.polroles,
                   pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
            FROM pg_policy p WHERE p.polrelid = parent
        LOOP
            EXECUTE format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', pol.polname, part,
                CASE WHEN pol.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                CASE WHEN pol.polroles = '{0}' THEN 'PUBLIC' ELSE
                    (SELECT string_agg(quote_ident(r.rolname), ', ') FROM pg_roles r WHERE r.oid = ANY(pol.polroles)) END,
                CASE WHEN pol.qual IS NOT NULL THEN ' USING (' || pol.qual || ')' ELSE '' END,
                CASE WHEN pol.check_expr IS NOT NULL THEN ' WITH CHECK (' || pol.check_expr || ')' ELSE '' END);
        END LOOP;
        touched := touched + 1;
    END LOOP;
    RETURN touched;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.grant_app_role(role name) RETURNS void
LANGUAGE plpgsql AS $$
-- The least privileges an application role needs to use existing collections: read and write documents,
-- the embedding cache and the registry it reads, run the SQL functions. Creating or dropping collections
-- and building indexes stay with the owner (they need ownership of vectorpg.documents). Run by the owner;
-- partitions created later by the owner get the same grants (ALTER DEFAULT PRIVILEGES).
DECLARE
    part regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role) THEN
        RAISE EXCEPTION 'role % does not exist', quote_ident(role) USING ERRCODE = '42704';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA vectorpg TO %I', role);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA vectorpg TO %I', role);
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON vectorpg.documents, vectorpg.embedding_cache TO %I', role);
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = 'vectorpg.documents'::regclass LOOP
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO %I', part, role);  -- writes that name a collection
    END LOOP;
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA vectorpg TO %I', role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA vectorpg GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', role);
END $$;

CREATE OR REPLACE FUNCTION vectorpg.documents_content_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
-- A document's text changed while reembed() runs: the new model's vector it had was of the old text.
-- Clear it; reembed() fills it again (its batches skip rows whose text changed under them, and its swap
-- fills every row still without one), so after the swap each vector is of the current text.
BEGIN
    NEW.embedding_next := NULL;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER documents_content_changed
BEFORE UPDATE OF content ON vectorpg.documents FOR EACH ROW
WHEN (OLD.embedding_next IS NOT NULL AND NEW.content IS DISTINCT FROM OLD.content
      AND NEW.embedding_next IS NOT DISTINCT FROM OLD.embedding_next)
EXECUTE FUNCTION vectorpg.documents_content_changed();

CREATE OR REPLACE FUNCTION vectorpg.drop_collection(name text) RETURNS boolean
LANGUAGE plpgsql AS $$
-- Drop a collection's partition (its documents and indexes) and its registry row.
BEGIN
    PERFORM vectorpg.check_collection_name(name);
    PERFORM pg_advisory_xact_lock(hashtext('vectorpg:' || name));
    EXECUTE format('DROP TABLE IF EXISTS %I.%I', 'vectorpg', 'documents_' || name);
    DELETE FROM vectorpg.index_tuning WHERE table_name = format('%I.%I', 'vectorpg', 'documents_' || name);
    DELETE FROM vectorpg.collections c WHERE c.name = $1;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.set_owner(role name) RETURNS int
LANGUAGE plpgsql AS $$
-- Make role the owner of vectorpg's schema and everything in it (tables, partitions, sequences, views,
-- functions); return how many objects changed hands. Run by the current owner or a superuser, once, to
-- hand the store to an application's owner role (docs/security.md), and by `vectorpg serve`.
DECLARE
    obj record;
    moved int := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role) THEN
        RAISE EXCEPTION 'role % does not exist', quote_ident(role) USING ERRCODE = '42704';
    END IF;
    EXECUTE format('ALTER SCHEMA vectorpg OWNER TO %I', role);
    FOR obj IN
        SELECT c.oid, c.relname, c.relkind FROM pg_class c
        WHERE c.relnamespace = 'vectorpg'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND pg_get_userbyid(c.relowner) <> role
          -- a sequence that belongs to a column moves with its table
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                                                 AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format(CASE obj.relkind WHEN 'S' THEN 'ALTER SEQUENCE %s OWNER TO %I'
                                        WHEN 'v' THEN 'ALTER VIEW %s OWNER TO %I'
                                        WHEN 'm' THEN 'ALTER MATERIALIZED VIEW %s OWNER TO %I'
                                        ELSE 'ALTER TABLE %s OWNER TO %I' END, obj.oid::regclass, role);
        moved := moved + 1;
    END LOOP;
    FOR obj IN
        SELECT p.oid FROM pg_proc p
        WHERE p.pronamespace = 'vectorpg'::regnamespace AND pg_get_userbyid(p.proowner) <> role
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', obj.oid::regprocedure, role);
        moved := moved + 1;
    END LOOP;
    RETURN moved;
END $$;

-- -- the filter language ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION vectorpg.filter_error(message text, path text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION 'invalid filter at %: %', coalesce(nullif(path, ''), 'top level'), message
        USING ERRCODE = '22023', HINT = 'see the filter language in docs/sql.md';
END $$;

CREATE OR REPLACE FUNCTION vectorpg.filter_scalar(value jsonb, path text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(value) IN ('object', 'array') THEN
        PERFORM vectorpg.filter_error(
            format('unsupported value %s of type %s: use a string, number, boolean or null',
                   left(value::text, 80), jsonb_typeof(value)), path);
    ELSIF jsonb_typeof(value) = 'string' AND length(value #>> '{}') > 65536 THEN
        PERFORM vectorpg.filter_error('string longer than 65536 characters', path);
    ELSIF jsonb_typeof(value) = 'number' AND abs(value::numeric) >= 1e300 THEN
        PERFORM vectorpg.filter_error('number too large', path);
    END IF;
    RETURN value;
END $$;

-- schema version 2 had filter_compile without the conditions counter, version 3 without the table: an
-- upgrade replaces them (the table has no default, so that the scripts of version 3, applied again after a
-- downgrade, add theirs without making a call ambiguous)
DROP FUNCTION IF EXISTS vectorpg.filter_compile(jsonb, int, text, jsonb[]);
DROP FUNCTION IF EXISTS vectorpg.filter_compile(jsonb, int, text, jsonb[], int);

CREATE OR REPLACE FUNCTION vectorpg.filter_nest(parts text[], value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
-- {"a": {"b": value}} for the path a.b: containment of it is equality of the value at a.b.
DECLARE
    i int;
BEGIN
    FOR i IN REVERSE array_length(parts, 1)..1 LOOP
        value := jsonb_build_object(parts[i], value);
    END LOOP;
    RETURN value;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.filter_value(n int, expr text DEFAULT '%s') RETURNS text
LANGUAGE sql IMMUTABLE AS $$
-- SQL text that reads filter parameter n once per query, through the filter_params CTE that every
-- statement using a filter defines (WITH filter_params AS MATERIALIZED (SELECT $2 AS p)). $2 itself is
-- referenced once: a reference per value would make the planner copy the whole array each time.
SELECT format('(SELECT %s FROM filter_params)', format(expr, format('filter_params.p[%s]', n)))
$$;

CREATE OR REPLACE FUNCTION vectorpg.filter_compile(
    spec jsonb, depth int, path text, INOUT params jsonb[], OUT clause text, INOUT conditions int, tbl regclass
)
LANGUAGE plpgsql STABLE AS $$
-- One level of a filter: appends its values to params and returns SQL text that refers to them only
-- through vectorpg.filter_value and to the row only as "metadata" (a collection's), or with tbl, to the
-- columns of that table's row d (vectorpg.filter_column). The limits are vectorpg/filters.py's and are
-- checked here, before any statement is planned.
DECLARE
    key text;
    arg jsonb;
    here text;
    op text;
    cond jsonb;
    item jsonb;
    parts text[];
    docs jsonb;
    sub text;
    subs text[];
    clauses text[] := '{}';
    ops text[];
    i int;
    value_at text;
    typed text;
    cmp text;
    max_conditions constant int := 256;  -- filters.MAX_CONDITIONS
    max_arity constant int := 256;       -- filters.MAX_ARITY
    max_keys constant int := 64;         -- filters.MAX_KEYS
BEGIN
    IF depth > 32 THEN
        PERFORM vectorpg.filter_error('filter nested deeper than 32 levels', path);
    END IF;
    IF spec IS NULL OR jsonb_typeof(spec) <> 'object' THEN
        PERFORM vectorpg.filter_error(format('a filter is an object, got %s', coalesce(jsonb_typeof(spec), 'NULL')), path);
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(spec)) > max_keys THEN
        PERFORM vectorpg.filter_error(format('more than %s keys in one object', max_keys), path);
    END IF;
    FOR key, arg IN SELECT e.key, e.value FROM jsonb_each(spec) e LOOP
        here := CASE WHEN path = '' THEN key ELSE path || '.' || key END;
        IF key IN ('$and', '$or') THEN
            IF jsonb_typeof(arg) <> 'array' OR jsonb_array_length(arg) = 0 THEN
                PERFORM vectorpg.filter_error(key || ' needs a non-empty list of filters', here);
            END IF;
            IF jsonb_array_length(arg) > max_arity THEN
                PERFORM vectorpg.filter_error(format('%s has more than %s filters', key, max_arity), here);
            END IF;
            subs := '{}';
            i := 0;
            FOR item IN SELECT a FROM jsonb_array_elements(arg) a LOOP
                SELECT f.params, f.clause, f.conditions INTO params, sub, conditions
                FROM vectorpg.filter_compile(item, depth + 1, format('%s[%s]', here, i), params, conditions, tbl) f;
                subs := subs || sub;
                i := i + 1;
            END LOOP;
            clauses := clauses || ('(' || array_to_string(subs, CASE key WHEN '$and' THEN ' AND ' ELSE ' OR ' END) || ')');
        ELSIF key = '$not' THEN
            SELECT f.params, f.clause, f.conditions INTO params, sub, conditions
            FROM vectorpg.filter_compile(arg, depth + 1, here, params, conditions, tbl) f;
            -- (a table's NULL column makes its condition NULL: NOT of it must be true, as for a missing key)
            clauses := clauses || ('(NOT coalesce(' || sub || ', false))');
        ELSIF key LIKE '$%' THEN
            PERFORM vectorpg.filter_error(
                format('unknown logical operator %s; use $and, $or or $not at this level', quote_literal(key)), here);
        ELSE
            IF key !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,15}$' THEN
                PERFORM vectorpg.filter_error(
                    format('invalid metadata key %s: use identifiers (letters, digits, ''_'') joined by ''.'', '
                           'or one of the operators $and, $or, $not', quote_literal(left(key, 80))), path);
            END IF;
            parts := string_to_array(key, '.');
            IF jsonb_typeof(arg) = 'object' THEN
                cond := arg;
                IF cond = '{}'::jsonb THEN
                    PERFORM vectorpg.filter_error('empty operator dict', here);
                END IF;
            ELSE
                cond := jsonb_build_object('$eq', arg);
            END IF;
            IF tbl IS NOT NULL THEN
                SELECT f.params, f.clause, f.conditions INTO params, sub, conditions
                FROM vectorpg.filter_column(tbl, key, cond, depth, here, params, conditions) f;
                clauses := clauses || sub;
                CONTINUE;
            END IF;
            ops := '{}';
            FOR op, arg IN SELECT e.key, e.value FROM jsonb_each(cond) e LOOP
                conditions := conditions + 1;
                IF conditions > max_conditions THEN
                    PERFORM vectorpg.filter_error(
                        format('more than %s conditions in one filter; use $in for a list of values', max_conditions),
                        here || '.' || op);
                END IF;
                IF op IN ('$eq', '$ne') THEN
                    params := params || vectorpg.filter_nest(parts, vectorpg.filter_scalar(arg, here || '.' || op));
                    ops := ops || format(CASE op WHEN '$eq' THEN '(metadata @> %s)' ELSE '(NOT metadata @> %s)' END,
                                         vectorpg.filter_value(cardinality(params)));
                ELSIF op IN ('$in', '$nin') THEN
                    IF jsonb_typeof(arg) <> 'array' OR jsonb_array_length(arg) = 0 THEN
                        PERFORM vectorpg.filter_error(op || ' needs a non-empty list', here || '.' || op);
                    END IF;
                    IF jsonb_array_length(arg) > 10000 THEN
                        PERFORM vectorpg.filter_error(op || ' list longer than 10000', here || '.' || op);
                    END IF;
                    SELECT jsonb_agg(vectorpg.filter_nest(parts, vectorpg.filter_scalar(a, here || '.' || op)))
                    INTO docs FROM jsonb_array_elements(arg) a;
                    -- the whole list is one parameter and one array: metadata @> ANY(...), as in Python
                    params := params || docs;
                    sub := format('(metadata @> ANY(%s::jsonb[]))', vectorpg.filter_value(cardinality(params),
                                  'ARRAY(SELECT jsonb_array_elements(%s))'));
                    ops := ops || CASE op WHEN '$in' THEN sub ELSE '(NOT ' || sub || ')' END;
                ELSIF op = '$exists' THEN
                    IF jsonb_typeof(arg) <> 'boolean' THEN
                        PERFORM vectorpg.filter_error('$exists needs true or false', here || '.' || op);
                    END IF;
                    params := params || to_jsonb(key);
                    ops := ops || format(
                        CASE WHEN arg = 'true'::jsonb THEN '((metadata #> %s) IS NOT NULL)' ELSE '((metadata #> %s) IS NULL)' END,
                        vectorpg.filter_value(cardinality(params), 'string_to_array(%s #>> ''{}'', ''.'')'));
                ELSIF op IN ('$lt', '$lte', '$gt', '$gte') THEN
                    PERFORM vectorpg.filter_scalar(arg, here || '.' || op);
                    IF jsonb_typeof(arg) NOT IN ('number', 'string') THEN
                        PERFORM vectorpg.filter_error(format('%s needs a number or a string, got %s', op, arg::text),
                                                      here || '.' || op);
                    END IF;
                    params := params || to_jsonb(key);
                    value_at := format('(metadata #> %s)',
                                       vectorpg.filter_value(cardinality(params), 'string_to_array(%s #>> ''{}'', ''.'')'));
                    params := params || arg;
                    cmp := CASE op WHEN '$lt' THEN '<' WHEN '$lte' THEN '<=' WHEN '$gt' THEN '>' ELSE '>=' END;
                    IF jsonb_typeof(arg) = 'number' THEN
                        typed := format('CASE WHEN jsonb_typeof(%1$s) = ''number'' THEN (%1$s)::numeric END %2$s %3$s',
                                        value_at, cmp, vectorpg.filter_value(cardinality(params), '(%s)::numeric'));
                    ELSE
                        typed := format('CASE WHEN jsonb_typeof(%1$s) = ''string'' THEN (%1$s #>> ''{}'') END COLLATE "C" %2$s %3$s COLLATE "C"',
                                        value_at, cmp, vectorpg.filter_value(cardinality(params), '(%s #>> ''{}'')'));
                    END IF;
                    ops := ops || ('coalesce(' || typed || ', false)');
                ELSIF op IN ('$like', '$ilike') THEN
                    PERFORM vectorpg.filter_scalar(arg, here || '.' || op);
                    IF jsonb_typeof(arg) <> 'string' THEN
                        PERFORM vectorpg.filter_error(format('%s needs a string pattern, got %s', op, arg::text),
                                                      here || '.' || op);
                    END IF;
                    IF (length(arg #>> '{}') - length(rtrim(arg #>> '{}', E'\\'))) % 2 = 1 THEN
                        PERFORM vectorpg.filter_error(
                            op || ' pattern ends with a lone backslash (the escape character): double it', here || '.' || op);
                    END IF;
                    params := params || to_jsonb(key);
                    value_at := format('(metadata #> %s)',
                                       vectorpg.filter_value(cardinality(params), 'string_to_array(%s #>> ''{}'', ''.'')'));
                    params := params || arg;
                    ops := ops || format('coalesce(CASE WHEN jsonb_typeof(%1$s) = ''string'' THEN (%1$s #>> ''{}'') END %2$s %3$s, false)',
                                         value_at, CASE op WHEN '$like' THEN 'LIKE' ELSE 'ILIKE' END,
                                         vectorpg.filter_value(cardinality(params), '(%s #>> ''{}'')'));
                ELSIF op = '$between' THEN
                    IF jsonb_typeof(arg) <> 'array' OR jsonb_array_length(arg) <> 2 THEN
                        PERFORM vectorpg.filter_error('$between needs a list of two bounds, [low, high]', here || '.' || op);
                    END IF;
                    PERFORM vectorpg.filter_scalar(arg -> 0, here || '.' || op);
                    PERFORM vectorpg.filter_scalar(arg -> 1, here || '.' || op);
                    IF jsonb_typeof(arg -> 0) NOT IN ('number', 'string') OR jsonb_typeof(arg -> 0) <> jsonb_typeof(arg -> 1) THEN
                        PERFORM vectorpg.filter_error(format('$between needs two numbers or two strings, got %s', arg::text),
                                                      here || '.' || op);
                    END IF;
                    SELECT f.params, f.clause, f.conditions INTO params, sub, conditions
                    FROM vectorpg.filter_compile(jsonb_build_object(key, jsonb_build_object('$gte', arg -> 0, '$lte', arg -> 1)),
                                                 depth, path, params, conditions - 2, tbl) f;
                    ops := ops || sub;
                ELSIF op = '$contains' THEN
                    IF jsonb_typeof(arg) = 'array' THEN
                        IF jsonb_array_length(arg) = 0 OR jsonb_array_length(arg) > 10000 THEN
                            PERFORM vectorpg.filter_error('$contains needs a scalar or a list of 1 to 10000 scalars',
                                                          here || '.' || op);
                        END IF;
                        SELECT jsonb_agg(vectorpg.filter_scalar(a, here || '.' || op)) INTO docs FROM jsonb_array_elements(arg) a;
                    ELSE
                        docs := jsonb_build_array(vectorpg.filter_scalar(arg, here || '.' || op));
                    END IF;
                    params := params || vectorpg.filter_nest(parts, docs);
                    ops := ops || format('(metadata @> %s)', vectorpg.filter_value(cardinality(params)));
                ELSE
                    PERFORM vectorpg.filter_error(
                        format('unknown operator %s; field operators are $between, $contains, $eq, $exists, $gt, $gte, '
                               '$ilike, $in, $like, $lt, $lte, $ne, $nin', quote_literal(op)), here || '.' || op);
                END IF;
            END LOOP;
            clauses := clauses || CASE WHEN cardinality(ops) = 1 THEN ops[1] ELSE '(' || array_to_string(ops, ' AND ') || ')' END;
        END IF;
    END LOOP;
    clause := CASE cardinality(clauses) WHEN 0 THEN 'true' WHEN 1 THEN clauses[1]
                   ELSE '(' || array_to_string(clauses, ' AND ') || ')' END;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.filter_column(
    tbl regclass, key text, cond jsonb, depth int, here text, INOUT params jsonb[], OUT clause text, INOUT conditions int
)
LANGUAGE plpgsql STABLE AS $$
-- One key of a filter over a table's own columns (vectorpg.search_table): the key names a column of tbl
-- (looked up in the catalog), or a path into a jsonb column ("meta.author"), which is compiled as a
-- collection's metadata is. A value must be of the column's kind (a number for numeric columns, a string for
-- text, dates, uuids and enums, true/false for booleans) and is compared in the column's own type, so the
-- column's btree indexes serve the filter. SQL NULL is a missing key: {"$exists": false} finds it.
DECLARE
    parts text[] := string_to_array(key, '.');
    typ regtype;
    cat "char";
    kind text;
    col text;
    lhs text;
    cast_to text;
    op text;
    arg jsonb;
    v jsonb;
    vals jsonb;
    sub text;
    ops text[] := '{}';
    max_conditions constant int := 256;  -- filters.MAX_CONDITIONS
BEGIN
    SELECT a.atttypid::regtype, t.typcategory INTO typ, cat
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = tbl AND a.attname = parts[1] AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        PERFORM vectorpg.filter_error(format('table %s has no column %s; its columns are %s', tbl, quote_ident(parts[1]),
            (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped)), here);
    END IF;
    col := format('d.%I', parts[1]);
    IF typ IN ('jsonb'::regtype, 'json'::regtype) AND cardinality(parts) > 1 THEN
        -- a path into a document column: the collection language over it ("metadata" is the only name of
        -- the row that filter_compile writes, values are parameters: the rename touches nothing else)
        SELECT f.params, f.clause, f.conditions INTO params, clause, conditions
        FROM vectorpg.filter_compile(jsonb_build_object(array_to_string(parts[2:], '.'), cond), depth + 1, parts[1],
                                     params, conditions, NULL) f;
        -- a NULL document is an empty one ({}), as a collection's metadata without the key
        clause := regexp_replace(clause, '\mmetadata\M', format('coalesce(%s%s, ''{}''::jsonb)', col,
                                 CASE WHEN typ = 'json'::regtype THEN '::jsonb' ELSE '' END), 'g');
        RETURN;
    END IF;
    kind := CASE WHEN typ IN ('jsonb'::regtype, 'json'::regtype) THEN 'document'
                 WHEN cat = 'N' THEN 'number' WHEN cat = 'B' THEN 'boolean' WHEN cat = 'A' THEN 'array'
                 WHEN cat IN ('S', 'D', 'E', 'T', 'I') OR typ = 'uuid'::regtype THEN 'string' END;
    IF kind IS NULL THEN
        PERFORM vectorpg.filter_error(format('column %s is of type %s, which filters do not compare (numbers, strings, '
            'dates, uuids, booleans, arrays and jsonb paths)', quote_ident(parts[1]), typ), here);
    ELSIF cardinality(parts) > 1 THEN
        PERFORM vectorpg.filter_error(format('column %s is of type %s, not jsonb: %s is no path into it',
                                             quote_ident(parts[1]), typ, quote_literal(key)), here);
    END IF;
    FOR op, arg IN SELECT e.key, e.value FROM jsonb_each(cond) e LOOP
        conditions := conditions + 1;
        IF conditions > max_conditions THEN
            PERFORM vectorpg.filter_error(
                format('more than %s conditions in one filter; use $in for a list of values', max_conditions), here || '.' || op);
        END IF;
        IF op NOT IN ('$eq', '$ne', '$in', '$nin', '$lt', '$lte', '$gt', '$gte', '$exists', '$between', '$like', '$ilike', '$contains') THEN
            PERFORM vectorpg.filter_error(
                format('unknown operator %s; field operators are $between, $contains, $eq, $exists, $gt, $gte, '
                       '$ilike, $in, $like, $lt, $lte, $ne, $nin', quote_literal(op)), here || '.' || op);
        END IF;
        IF op = '$exists' THEN
            IF jsonb_typeof(arg) <> 'boolean' THEN
                PERFORM vectorpg.filter_error('$exists needs true or false', here || '.' || op);
            END IF;
            ops := ops || format('(%s IS %sNULL)', col, CASE WHEN arg = 'true'::jsonb THEN 'NOT ' ELSE '' END);
            CONTINUE;
        END IF;
        IF kind = 'document' THEN
            PERFORM vectorpg.filter_error(format('column %s is a document (%s): filter a key inside it (%s.<key>) or '
                                                 'use $exists', quote_ident(parts[1]), typ, key), here || '.' || op);
        END IF;
        IF (op = '$contains') <> (kind = 'array') THEN
            PERFORM vectorpg.filter_error(CASE WHEN kind = 'array'
                THEN format('column %s is an array (%s): filter it with $contains or $exists', quote_ident(parts[1]), typ)
                ELSE format('$contains reads array columns; %s is of type %s', quote_ident(parts[1]), typ) END,
                here || '.' || op);
        END IF;
        IF kind = 'boolean' AND op NOT IN ('$eq', '$ne', '$in', '$nin') THEN
            PERFORM vectorpg.filter_error(format('%s does not order booleans (column %s)', op, quote_ident(parts[1])), here || '.' || op);
        END IF;
        IF op IN ('$like', '$ilike') THEN
            IF cat <> 'S' THEN
                PERFORM vectorpg.filter_error(format('%s matches text columns; %s is of type %s', op, quote_ident(parts[1]), typ),
                                              here || '.' || op);
            END IF;
            IF (length(arg #>> '{}') - length(rtrim(arg #>> '{}', E'\\'))) % 2 = 1 THEN
                PERFORM vectorpg.filter_error(
                    op || ' pattern ends with a lone backslash (the escape character): double it', here || '.' || op);
            END IF;
        END IF;
        -- the values, each of the column's kind (an array column's elements: compared as its element type)
        IF op IN ('$in', '$nin', '$between') OR (op = '$contains' AND jsonb_typeof(arg) = 'array') THEN
            IF jsonb_typeof(arg) <> 'array' OR jsonb_array_length(arg) = 0 OR jsonb_array_length(arg) > 10000
               OR (op = '$between' AND jsonb_array_length(arg) <> 2) THEN
                PERFORM vectorpg.filter_error(CASE op WHEN '$between' THEN '$between needs a list of two bounds, [low, high]'
                    ELSE op || ' needs a non-empty list of at most 10000 values' END, here || '.' || op);
            END IF;
            vals := arg;
        ELSE
            vals := jsonb_build_array(arg);
        END IF;
        FOR v IN SELECT a FROM jsonb_array_elements(vals) a LOOP
            PERFORM vectorpg.filter_scalar(v, here || '.' || op);
            IF jsonb_typeof(v) = 'null' THEN
                PERFORM vectorpg.filter_error(format('column %s: NULL is found with {"$exists": false}, not compared',
                                                     quote_ident(parts[1])), here || '.' || op);
            ELSIF kind <> 'array' AND jsonb_typeof(v) <> kind THEN
                PERFORM vectorpg.filter_error(format('column %s is of type %s: compare it with a %s, got %s',
                                                     quote_ident(parts[1]), typ, kind, left(v::text, 80)), here || '.' || op);
            END IF;
        END LOOP;
        -- compared in the column's type (its indexes serve), unless a number is not one of that type (a
        -- fraction or out of range for an integer column, more digits than a float holds): then as numeric
        cast_to := typ::text;
        lhs := col;
        IF kind = 'number' AND EXISTS (
            SELECT 1 FROM jsonb_array_elements(vals) a
            WHERE CASE typ WHEN 'smallint'::regtype THEN a::numeric <> trunc(a::numeric) OR abs(a::numeric) > 32767
                           WHEN 'integer'::regtype THEN a::numeric <> trunc(a::numeric) OR abs(a::numeric) > 2147483647
                           WHEN 'bigint'::regtype THEN a::numeric <> trunc(a::numeric) OR abs(a::numeric) > 9223372036854775807
                           WHEN 'real'::regtype THEN a::numeric::real::text::numeric <> a::numeric
                           WHEN 'double precision'::regtype THEN a::numeric::float8::text::numeric <> a::numeric
                           ELSE false END) THEN
            cast_to := 'numeric';
            lhs := col || '::numeric';
        END IF;
        params := params || CASE WHEN op IN ('$in', '$nin', '$between', '$contains') THEN vals ELSE arg END;
        -- a JSON number reaches its type through numeric (7.0 is an integer), anything else through its text
        IF op IN ('$in', '$nin', '$contains') THEN
            sub := vectorpg.filter_value(cardinality(params), CASE
                WHEN op = '$contains' THEN 'ARRAY(SELECT jsonb_array_elements_text(%s))::' || typ::text
                WHEN kind = 'number' THEN 'ARRAY(SELECT a::numeric::' || cast_to || ' FROM jsonb_array_elements(%s) a)'
                ELSE 'ARRAY(SELECT jsonb_array_elements_text(%s))::' || cast_to || '[]' END);
            -- (= ANY of an array expression, cast: = ANY (subquery) would compare with each row instead)
            sub := format(CASE op WHEN '$contains' THEN '(%s @> %s)' ELSE '(%s = ANY(%s::' || cast_to || '[]))' END, lhs, sub);
            ops := ops || CASE op WHEN '$nin' THEN 'NOT coalesce(' || sub || ', false)' ELSE sub END;
        ELSIF op = '$between' THEN
            ops := ops || format('coalesce(%1$s%4$s >= %2$s%4$s AND %1$s%4$s <= %3$s%4$s, false)', lhs,
                                 vectorpg.filter_value(cardinality(params), CASE WHEN kind = 'number'
                                     THEN '((%s -> 0)::numeric::' ELSE '((%s ->> 0)::' END || cast_to || ')'),
                                 vectorpg.filter_value(cardinality(params), CASE WHEN kind = 'number'
                                     THEN '((%s -> 1)::numeric::' ELSE '((%s ->> 1)::' END || cast_to || ')'),
                                 CASE WHEN cat = 'S' THEN ' COLLATE "C"' ELSE '' END);
        ELSE
            sub := vectorpg.filter_value(cardinality(params), CASE WHEN kind = 'number' THEN '((%s)::numeric::'
                                                                   ELSE '((%s #>> ''{}'')::' END || cast_to || ')');
            ops := ops || CASE op
                WHEN '$eq' THEN format('(%s = %s)', lhs, sub)
                WHEN '$ne' THEN format('(%s IS DISTINCT FROM %s)', lhs, sub)
                WHEN '$like' THEN format('coalesce(%s LIKE %s, false)', col, sub)
                WHEN '$ilike' THEN format('coalesce(%s ILIKE %s, false)', col, sub)
                ELSE format('coalesce(%1$s%4$s %2$s %3$s%4$s, false)', lhs,
                            CASE op WHEN '$lt' THEN '<' WHEN '$lte' THEN '<=' WHEN '$gt' THEN '>' ELSE '>=' END, sub,
                            CASE WHEN cat = 'S' THEN ' COLLATE "C"' ELSE '' END) END;
        END IF;
    END LOOP;
    clause := CASE WHEN cardinality(ops) = 1 THEN ops[1] ELSE '(' || array_to_string(ops, ' AND ') || ')' END;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.filter_sql(filter jsonb, tbl regclass, OUT clause text, OUT params jsonb[])
LANGUAGE plpgsql STABLE AS $$
-- The WHERE clause of a filter (over a column named metadata, or with tbl over that table's columns, its
-- row aliased d) and its parameters, for inspection:
--   SELECT * FROM vectorpg.filter_sql('{"lang": "en", "year": {"$gte": 2020}}');
--   SELECT * FROM vectorpg.filter_sql('{"lang": "en", "year": {"$gte": 2020}}', 'products');
-- The clause reads its values from a CTE that the statement defines as
--   WITH filter_params AS MATERIALIZED (SELECT $2 AS p)
-- A filter over the limits (filters.MAX_FILTER_BYTES of JSON and the counts that filter_compile checks)
-- is refused here, before anything is planned.
DECLARE
    max_bytes constant int := 262144;  -- filters.MAX_FILTER_BYTES
BEGIN
    params := '{}';
    IF filter IS NULL OR filter = '{}'::jsonb THEN
        clause := 'true';
        RETURN;
    END IF;
    IF octet_length(filter::text) > max_bytes THEN
        PERFORM vectorpg.filter_error(format('the filter is %s bytes of JSON, more than the limit of %s',
                                             octet_length(filter::text), max_bytes), '');
    END IF;
    SELECT f.params, f.clause INTO params, clause FROM vectorpg.filter_compile(filter, 0, '', params, 0, tbl) f;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.filter_sql(filter jsonb, OUT clause text, OUT params jsonb[])
LANGUAGE sql STABLE AS $$
-- The WHERE clause of a filter over a collection's metadata (filter_sql(filter, NULL)).
SELECT f.clause, f.params FROM vectorpg.filter_sql(filter, NULL::regclass) f
$$;

-- -- search ----------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION vectorpg.set_local(settings text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
-- Apply name/value pairs with set_config(..., true) (NULL values are skipped); return the previous values.
DECLARE
    previous text[] := '{}';
    i int;
BEGIN
    FOR i IN 1..coalesce(array_length(settings, 1), 0) BY 2 LOOP
        previous := previous || ARRAY[settings[i], current_setting(settings[i], true)];
        IF settings[i + 1] IS NOT NULL THEN
            PERFORM set_config(settings[i], settings[i + 1], true);
        END IF;
    END LOOP;
    RETURN previous;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.plan_rows(plan json) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
-- The rows the node of an EXPLAIN (FORMAT JSON) plan estimates. On Citus a distributed query's node (Custom
-- Scan, "Distributed Query") carries a fixed guess (100,000 rows whatever the filter): the estimate is the
-- shards' own, the shown tasks' mean remote plan rows times the task count (vectorpg.db.citus.plan_rows).
SELECT coalesce(
    (SELECT round(avg((t -> 'Remote Plan' -> 0 -> 0 -> 'Plan' ->> 'Plan Rows')::numeric)
                  * coalesce(max(plan -> 'Distributed Query' -> 'Job' ->> 'Task Count')::numeric, count(*)))
     FROM json_array_elements(plan -> 'Distributed Query' -> 'Job' -> 'Tasks') t
     WHERE plan ->> 'Node Type' = 'Custom Scan' AND t -> 'Remote Plan' IS NOT NULL
     HAVING count(*) > 0),
    (plan ->> 'Plan Rows')::numeric)
$$;

CREATE OR REPLACE FUNCTION vectorpg.ann_plan(
    part text, index_name text, method text, kind text, options text[], k int, where_sql text, params jsonb[],
    OUT fetch_n int, OUT settings text[]
)
LANGUAGE plpgsql AS $$
-- How vectorpg.search and vectorpg.search_table read a vector index (part: the table, its rows aliased d in
-- where_sql): fetch_n NULL when at most 2,000 rows match the filter (the exact plan over them is fast and
-- exact), else the candidates to take from the index (kind: vector, halfvec or bit) and the scan's settings.
DECLARE
    matched bigint;
    estimated numeric;
    table_rows numeric;
    plan json;
    tuned int;
    exact_max_rows constant int := 2000;  -- PlannerConfig.exact_max_rows
BEGIN
    IF where_sql <> 'true' THEN
        -- count the matching rows (capped) unless PostgreSQL estimates far more (estimates of rare values
        -- are often low, never trusted alone)
        EXECUTE format('EXPLAIN (FORMAT JSON) WITH filter_params AS MATERIALIZED (SELECT $2 AS p) SELECT 1 FROM %s d WHERE %s', part, where_sql) INTO STRICT plan
            USING NULL::vector, params;
        estimated := vectorpg.plan_rows(plan -> 0 -> 'Plan');
        IF estimated <= 2 * exact_max_rows THEN
            EXECUTE format('WITH filter_params AS MATERIALIZED (SELECT $2 AS p) SELECT count(*) FROM (SELECT 1 FROM %s d WHERE %s LIMIT %s) m', part, where_sql, exact_max_rows + 1)
                INTO matched USING NULL::vector, params;
            IF matched <= exact_max_rows THEN
                RETURN;
            END IF;
        END IF;
    END IF;
    SELECT t.value INTO tuned FROM vectorpg.index_tuning t
    WHERE t.table_name = part AND t.index_name = ann_plan.index_name AND t.target >= 0.95 ORDER BY t.target LIMIT 1;
    fetch_n := CASE kind WHEN 'vector' THEN CASE WHEN where_sql = 'true' THEN k ELSE k * 4 END  -- relaxed order: take more, re-sort
                         WHEN 'halfvec' THEN k * 2 ELSE k * 20 END;
    IF method = 'hnsw' THEN
        settings := ARRAY['hnsw.ef_search', greatest(
            coalesce(tuned, current_setting('hnsw.ef_search', true)::int, 40), least(fetch_n, 1000))::text];
    ELSE
        settings := ARRAY['ivfflat.probes', coalesce(tuned, greatest(1, floor(sqrt(coalesce(
            (SELECT split_part(o, '=', 2)::int FROM unnest(options) o WHERE o LIKE 'lists=%'), 100))))::int)::text];
    END IF;
    IF where_sql <> 'true' THEN
        EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM %s', part) INTO STRICT plan;
        table_rows := greatest(1, vectorpg.plan_rows(plan -> 0 -> 'Plan'));
        estimated := greatest(coalesce(matched, 0), coalesce(estimated, 0), 1);
        settings := settings || ARRAY[
            'hnsw.iterative_scan', 'relaxed_order', 'ivfflat.iterative_scan', 'relaxed_order',
            'hnsw.max_scan_tuples', greatest(20000, least(2000000, ceil(k * table_rows / estimated * 4)))::text];
    ELSE  -- dead rows not yet vacuumed use up candidates: let the scan go on past them
        settings := settings || ARRAY['hnsw.iterative_scan', 'relaxed_order', 'ivfflat.iterative_scan', 'relaxed_order'];
    END IF;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.search(
    collection text, query vector, k int, filter jsonb DEFAULT '{}'
) RETURNS TABLE (id text, content text, metadata jsonb, distance double precision)
LANGUAGE plpgsql AS $$
-- The k documents of a collection nearest to query that match filter, nearest first.
#variable_conflict use_column
DECLARE
    dim int;
    metric_name text;
    m text;
    part text;
    op text;
    where_sql text;
    params jsonb[];
    idx record;
    kind text;
    order_expr text;
    fetch_n int;
    settings text[];
    previous text[];
    ids text[];
    contents text[];
    metas jsonb[];
    dists float8[];
BEGIN
    PERFORM vectorpg.check_collection_name(collection);
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'k must be an integer from 1 to 100000, got %', coalesce(k::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    SELECT c.dimension, c.metric INTO dim, metric_name FROM vectorpg.collections c WHERE c.name = collection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection % does not exist', quote_literal(collection) USING ERRCODE = '42P01',
            HINT = 'list them with: SELECT name FROM vectorpg.collections';
    END IF;
    IF query IS NULL OR vector_dims(query) <> dim THEN
        RAISE EXCEPTION 'the query has % dimensions, collection % has %',
            coalesce(vector_dims(query)::text, 'no'), quote_literal(collection), dim USING ERRCODE = '22023';
    END IF;
    IF metric_name = 'cosine' AND vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'a zero query vector has no cosine distance' USING ERRCODE = '22023';
    END IF;
    op := CASE metric_name WHEN 'cosine' THEN '<=>' WHEN 'l2' THEN '<->' WHEN 'inner_product' THEN '<#>' ELSE '<+>' END;
    m := CASE metric_name WHEN 'inner_product' THEN 'ip' ELSE metric_name END;
    part := format('%I.%I', 'vectorpg', 'documents_' || collection);
    SELECT f.clause, f.params INTO where_sql, params FROM vectorpg.filter_sql(filter) f;

    -- the collection's vector index (Collection.create_index): plain (vector(n) cast), else halfvec, else binary
    SELECT i.relname AS name, am.amname AS method, split_part(opc.opcname, '_', 1) AS kind, i.reloptions AS options
    INTO idx
    FROM pg_index ix
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_am am ON am.oid = i.relam
    JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
    WHERE ix.indrelid = part::regclass AND ix.indisvalid AND ix.indpred IS NULL AND ix.indexprs IS NOT NULL
      AND am.amname IN ('hnsw', 'ivfflat')
      AND opc.opcname IN ('vector_' || m || '_ops', 'halfvec_' || m || '_ops', 'bit_hamming_ops')
    ORDER BY CASE split_part(opc.opcname, '_', 1) WHEN 'vector' THEN 0 WHEN 'halfvec' THEN 1 ELSE 2 END, i.relname
    LIMIT 1;
    kind := CASE WHEN FOUND THEN idx.kind END;

    IF kind IS NOT NULL THEN
        SELECT p.fetch_n, p.settings INTO fetch_n, settings
        FROM vectorpg.ann_plan(part, idx.name, idx.method, kind, idx.options, k, where_sql, params) p;
    END IF;

    IF fetch_n IS NOT NULL THEN
        IF kind = 'vector' THEN
            order_expr := format('(d.embedding)::vector(%s) %s $1', dim, op);
        ELSIF kind = 'halfvec' THEN
            order_expr := format('(d.embedding)::halfvec(%1$s) %2$s ($1)::halfvec(%1$s)', dim, op);
        ELSE
            order_expr := format('(binary_quantize(d.embedding))::bit(%s) <~> binary_quantize($1)', dim);
        END IF;
        previous := vectorpg.set_local(settings);
        EXECUTE format(
            'WITH filter_params AS MATERIALIZED (SELECT $2 AS p), nearest AS MATERIALIZED (SELECT d.id, d.content, d.metadata, d.embedding FROM %1$s d WHERE %2$s '
            'ORDER BY %3$s LIMIT $4), '
            'ranked AS (SELECT n.id, n.content, n.metadata, (n.embedding %4$s $1)::float8 AS distance FROM nearest n '
            'ORDER BY 4, 1 LIMIT $3) '
            'SELECT array_agg(r.id ORDER BY r.distance, r.id), array_agg(r.content ORDER BY r.distance, r.id), '
            'array_agg(r.metadata ORDER BY r.distance, r.id), array_agg(r.distance ORDER BY r.distance, r.id) FROM ranked r',
            part, where_sql, order_expr, op) INTO ids, contents, metas, dists USING query, params, k, fetch_n;
        PERFORM vectorpg.set_local(previous);
        IF coalesce(cardinality(ids), 0) >= k THEN
            RETURN QUERY SELECT * FROM unnest(ids, contents, metas, dists);
            RETURN;
        END IF;
        -- the index scan came back short: if k rows match, the exact plan below finds them
    END IF;

    -- exact: no index scans (an ANN index must not answer), filters keep their bitmap scans
    previous := vectorpg.set_local(ARRAY['enable_indexscan', 'off']);
    RETURN QUERY EXECUTE format(
        'WITH filter_params AS MATERIALIZED (SELECT $2 AS p) '
        'SELECT d.id, d.content, d.metadata, (d.embedding %1$s $1)::float8 AS distance FROM %2$s d WHERE %3$s '
        'ORDER BY 4, 1 LIMIT $3', op, part, where_sql) USING query, params, k;
    PERFORM vectorpg.set_local(previous);
END $$;

CREATE OR REPLACE FUNCTION vectorpg.text_query(config regconfig, query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
-- The text leg's query, as vectorpg/search/hybrid.py builds it: an OR of the query's lexemes (documents that
-- share any of its significant terms, ranked), unless the query uses web-search syntax ("a phrase", -word, OR)
SELECT CASE WHEN query ~* '"|(^|\s)-\w|\sor\s' THEN websearch_to_tsquery(config, query)
            ELSE replace(plainto_tsquery(config, query)::text, ' & ', ' | ')::tsquery END
$$;

CREATE OR REPLACE FUNCTION vectorpg.hybrid_search(
    collection text, query_text text, query vector, k int, filter jsonb DEFAULT '{}', rrf_k int DEFAULT 60,
    config regconfig DEFAULT 'english'
) RETURNS TABLE (
    id text, content text, metadata jsonb, score double precision,
    vector_rank bigint, vector_distance double precision, text_rank bigint, text_score real
)
LANGUAGE plpgsql AS $$
-- Full-text + vector search fused by reciprocal rank: score = 1/(rrf_k + vector rank) + 1/(rrf_k + text
-- rank), a leg that did not find a document adding 0. Each leg takes max(4k, 40) candidates over the
-- filtered rows. The text leg reads to_tsvector(config, content), which Collection.create_text_index
-- indexes; query NULL runs the text leg alone.
#variable_conflict use_column
DECLARE
    dim int;
    metric_name text;
    op text;
    part text;
    where_sql text;
    params jsonb[];
BEGIN
    PERFORM vectorpg.check_collection_name(collection);
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'k must be an integer from 1 to 100000, got %', coalesce(k::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF rrf_k IS NULL OR rrf_k < 0 OR rrf_k > 10000 THEN
        RAISE EXCEPTION 'rrf_k must be an integer from 0 to 10000, got %', coalesce(rrf_k::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'hybrid search needs a non-empty query text' USING ERRCODE = '22023';
    END IF;
    SELECT c.dimension, c.metric INTO dim, metric_name FROM vectorpg.collections c WHERE c.name = collection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection % does not exist', quote_literal(collection) USING ERRCODE = '42P01',
            HINT = 'list them with: SELECT name FROM vectorpg.collections';
    END IF;
    IF query IS NOT NULL AND vector_dims(query) <> dim THEN
        RAISE EXCEPTION 'the query has % dimensions, collection % has %', vector_dims(query), quote_literal(collection), dim
            USING ERRCODE = '22023';
    END IF;
    IF query IS NOT NULL AND metric_name = 'cosine' AND vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'a zero query vector has no cosine distance' USING ERRCODE = '22023';
    END IF;
    op := CASE metric_name WHEN 'cosine' THEN '<=>' WHEN 'l2' THEN '<->' WHEN 'inner_product' THEN '<#>' ELSE '<+>' END;
    part := format('%I.%I', 'vectorpg', 'documents_' || collection);
    SELECT f.clause, f.params INTO where_sql, params FROM vectorpg.filter_sql(filter) f;
    RETURN QUERY EXECUTE format(
        'WITH filter_params AS MATERIALIZED (SELECT $2 AS p), vector_leg AS (SELECT v.id, v.distance, row_number() OVER (ORDER BY v.distance) AS rank FROM ('
        '    SELECT d.id, (d.embedding %1$s $1)::float8 AS distance FROM %2$s d WHERE $1 IS NOT NULL AND %3$s '
        '    ORDER BY 2 LIMIT $4) v), '
        'text_leg AS (SELECT t.id, t.score, row_number() OVER (ORDER BY t.score DESC) AS rank FROM ('
        '    SELECT d.id, ts_rank_cd(to_tsvector($6, coalesce(d.content, '''')), vectorpg.text_query($6, $5)) AS score '
        '    FROM %2$s d WHERE %3$s AND to_tsvector($6, coalesce(d.content, '''')) @@ vectorpg.text_query($6, $5) '
        '    ORDER BY 2 DESC LIMIT $4) t), '
        'fused AS (SELECT coalesce(v.id, t.id) AS id, '
        '    coalesce(1.0::float8 / ($7 + v.rank), 0) + coalesce(1.0::float8 / ($7 + t.rank), 0) AS score, '
        '    v.rank AS vector_rank, v.distance AS vector_distance, t.rank AS text_rank, t.score AS text_score '
        '    FROM vector_leg v FULL OUTER JOIN text_leg t ON v.id = t.id '
        '    ORDER BY 2 DESC, 1 LIMIT $3) '
        'SELECT f.id, d.content, d.metadata, f.score, f.vector_rank, f.vector_distance, f.text_rank, f.text_score '
        'FROM fused f JOIN %2$s d ON d.id = f.id ORDER BY f.score DESC, f.id',
        op, part, where_sql) USING query, params, k, greatest(4 * k, 40), query_text, config, rrf_k;
END $$;

-- -- an application's own tables -------------------------------------------------------------------

CREATE OR REPLACE FUNCTION vectorpg.table_vector(
    tbl regclass, vector_column name, query vector, metric text,
    OUT kind text, OUT op text, OUT index_name text, OUT index_method text, OUT index_options text[]
)
LANGUAGE plpgsql STABLE AS $$
-- The checks and the plan common to search_table and hybrid_search_table: the column (a vector or halfvec
-- column of tbl), the query when there is one (its dimension, not zero under cosine), the metric (given, or
-- the one of the column's HNSW/IVFFlat index) with its operator, and that index when it serves the metric.
DECLARE
    col_num int2;
    typmod int;
    m text;
    idx record;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'no table given' USING ERRCODE = '22023';
    END IF;
    SELECT a.attnum, t.typname, a.atttypmod INTO col_num, kind, typmod
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = tbl AND a.attname = vector_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % has no column %', tbl, quote_ident(vector_column) USING ERRCODE = '42703',
            HINT = coalesce('its vector columns: ' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND t.typname IN ('vector', 'halfvec')),
                'it has no vector or halfvec column');
    END IF;
    IF kind NOT IN ('vector', 'halfvec') THEN
        RAISE EXCEPTION 'column % of % is of type %: search_table searches vector and halfvec columns',
            quote_ident(vector_column), tbl, kind USING ERRCODE = '22023';
    END IF;
    IF metric IS NOT NULL AND metric NOT IN ('cosine', 'l2', 'inner_product', 'l1') THEN
        RAISE EXCEPTION 'unknown metric %: use cosine, l2, inner_product or l1', quote_literal(metric) USING ERRCODE = '22023';
    END IF;
    IF query IS NOT NULL AND typmod > 0 AND vector_dims(query) <> typmod THEN
        RAISE EXCEPTION 'the query has % dimensions, column %.% has %', vector_dims(query), tbl,
            quote_ident(vector_column), typmod USING ERRCODE = '22023';
    END IF;
    m := CASE metric WHEN 'inner_product' THEN 'ip' ELSE metric END;
    SELECT i.relname AS name, am.amname AS method, i.reloptions AS options, split_part(opc.opcname, '_', 2) AS metric
    INTO idx
    FROM pg_index ix
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_am am ON am.oid = i.relam
    JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
    WHERE ix.indrelid = tbl AND ix.indisvalid AND ix.indpred IS NULL AND ix.indexprs IS NULL AND ix.indnatts = 1
      AND ix.indkey[0] = col_num AND am.amname IN ('hnsw', 'ivfflat')
      AND (m IS NULL OR opc.opcname = kind || '_' || m || '_ops')
    ORDER BY am.amname, i.relname
    LIMIT 1;
    IF FOUND THEN
        index_name := idx.name;
        index_method := idx.method;
        index_options := idx.options;
        metric := coalesce(metric, CASE idx.metric WHEN 'ip' THEN 'inner_product' ELSE idx.metric END);
    ELSIF metric IS NULL AND query IS NOT NULL THEN
        RAISE EXCEPTION 'column %.% has no HNSW or IVFFlat index to tell its metric', tbl, quote_ident(vector_column)
            USING ERRCODE = '22023', HINT = 'pass metric => ''cosine'' (or ''l2'', ''inner_product'', ''l1'')';
    END IF;
    IF metric = 'cosine' AND vector_norm(query) = 0 THEN
        RAISE EXCEPTION 'a zero query vector has no cosine distance' USING ERRCODE = '22023';
    END IF;
    op := CASE metric WHEN 'cosine' THEN '<=>' WHEN 'inner_product' THEN '<#>' WHEN 'l1' THEN '<+>' ELSE '<->' END;
END $$;

CREATE OR REPLACE FUNCTION vectorpg.search_table(
    tbl regclass, vector_column name, query vector, k int, filter jsonb DEFAULT '{}', metric text DEFAULT NULL
) RETURNS TABLE (row_data jsonb, distance double precision)
LANGUAGE plpgsql AS $$
-- The k rows of an application's own table nearest to query whose columns match filter, nearest first:
-- each row as jsonb without its vector column (jsonb_populate_record(NULL::tbl, row_data) types it again),
-- and its distance. The filter language is the collections', over the table's columns (filter_column); the
-- plan is vectorpg.search's: exact over at most 2,000 matching rows, else the column's HNSW or IVFFlat index
-- with an iterative scan, and exact again when the index comes back short. metric defaults to the index's.
DECLARE
    col record;
    where_sql text;
    params jsonb[];
    q text;
    fetch_n int;
    settings text[];
    previous text[];
    found_rows jsonb[];
    dists float8[];
BEGIN
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'k must be an integer from 1 to 100000, got %', coalesce(k::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF query IS NULL THEN
        RAISE EXCEPTION 'search_table needs a query vector' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO col FROM vectorpg.table_vector(tbl, vector_column, query, metric);
    SELECT f.clause, f.params INTO where_sql, params FROM vectorpg.filter_sql(filter, tbl) f;
    q := CASE col.kind WHEN 'halfvec' THEN '($1)::halfvec' ELSE '$1' END;
    IF col.index_name IS NOT NULL THEN
        SELECT p.fetch_n, p.settings INTO fetch_n, settings
        FROM vectorpg.ann_plan(tbl::text, col.index_name, col.index_method, 'vector', col.index_options, k, where_sql, params) p;
    END IF;
    IF fetch_n IS NOT NULL THEN
        previous := vectorpg.set_local(settings);
        EXECUTE format(
            'WITH filter_params AS MATERIALIZED (SELECT $2 AS p), nearest AS MATERIALIZED (SELECT d.* FROM %1$s d WHERE %2$s '
            'ORDER BY d.%3$I %4$s %5$s LIMIT $4), '
            'ranked AS (SELECT to_jsonb(n) - %6$L AS row_data, (n.%3$I %4$s %5$s)::float8 AS distance FROM nearest n ORDER BY 2 LIMIT $3) '
            'SELECT array_agg(r.row_data ORDER BY r.distance), array_agg(r.distance ORDER BY r.distance) FROM ranked r',
            tbl, where_sql, vector_column, col.op, q, vector_column::text) INTO found_rows, dists USING query, params, k, fetch_n;
        PERFORM vectorpg.set_local(previous);
        IF coalesce(cardinality(found_rows), 0) >= k THEN
            RETURN QUERY SELECT * FROM unnest(found_rows, dists);
            RETURN;
        END IF;
    END IF;
    previous := vectorpg.set_local(ARRAY['enable_indexscan', 'off']);
    RETURN QUERY EXECUTE format(
        'WITH filter_params AS MATERIALIZED (SELECT $2 AS p) '
        'SELECT to_jsonb(d) - %5$L, (d.%3$I %4$s %6$s)::float8 FROM %1$s d WHERE %2$s ORDER BY 2 LIMIT $3',
        tbl, where_sql, vector_column, col.op, vector_column::text, q) USING query, params, k;
    PERFORM vectorpg.set_local(previous);
END $$;

CREATE OR REPLACE FUNCTION vectorpg.hybrid_search_table(
    tbl regclass, vector_column name, text_column name, query_text text, query vector, k int,
    filter jsonb DEFAULT '{}', rrf_k int DEFAULT 60, config regconfig DEFAULT 'english', metric text DEFAULT NULL
) RETURNS TABLE (
    row_data jsonb, score double precision,
    vector_rank bigint, vector_distance double precision, text_rank bigint, text_score real
)
LANGUAGE plpgsql AS $$
-- vectorpg.hybrid_search over an application's own table: the vector leg on vector_column, the full-text
-- leg on text_column (a tsvector column, or text read as to_tsvector(config, text_column), which a GIN
-- index on that expression serves), fused by reciprocal rank; rows as in search_table. query NULL runs the
-- text leg alone (metric is then needed only to check the column).
#variable_conflict use_column
DECLARE
    col record;
    text_type regtype;
    where_sql text;
    params jsonb[];
    doc text;
BEGIN
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION 'k must be an integer from 1 to 100000, got %', coalesce(k::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF rrf_k IS NULL OR rrf_k < 0 OR rrf_k > 10000 THEN
        RAISE EXCEPTION 'rrf_k must be an integer from 0 to 10000, got %', coalesce(rrf_k::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF query_text IS NULL OR btrim(query_text) = '' THEN
        RAISE EXCEPTION 'hybrid search needs a non-empty query text' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO col FROM vectorpg.table_vector(tbl, vector_column, query, metric);
    SELECT a.atttypid::regtype INTO text_type FROM pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = text_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % has no column %', tbl, quote_ident(text_column) USING ERRCODE = '42703';
    END IF;
    doc := CASE WHEN text_type = 'tsvector'::regtype THEN format('d.%I', text_column)
                WHEN text_type IN ('text'::regtype, 'character varying'::regtype) THEN format('to_tsvector(%L::regconfig, d.%I)', config::text, text_column) END;
    IF doc IS NULL THEN
        RAISE EXCEPTION 'column % of % is of type %: the text leg reads a text or tsvector column', quote_ident(text_column),
            tbl, text_type USING ERRCODE = '22023';
    END IF;
    SELECT f.clause, f.params INTO where_sql, params FROM vectorpg.filter_sql(filter, tbl) f;
    RETURN QUERY EXECUTE format(
        'WITH filter_params AS MATERIALIZED (SELECT $2 AS p), vector_leg AS (SELECT v.*, row_number() OVER (ORDER BY v.distance) AS rank FROM ('
        '    SELECT d.tableoid AS rel, d.ctid AS tid, to_jsonb(d) - %6$L AS row_data, (d.%3$I %4$s %7$s)::float8 AS distance '
        '    FROM %1$s d WHERE $1 IS NOT NULL AND %2$s ORDER BY 4 LIMIT $4) v), '
        'text_leg AS (SELECT t.*, row_number() OVER (ORDER BY t.score DESC) AS rank FROM ('
        '    SELECT d.tableoid AS rel, d.ctid AS tid, to_jsonb(d) - %6$L AS row_data, ts_rank_cd(%5$s, vectorpg.text_query(%8$L, $5)) AS score '
        '    FROM %1$s d WHERE %2$s AND %5$s @@ vectorpg.text_query(%8$L, $5) ORDER BY 4 DESC LIMIT $4) t) '
        'SELECT coalesce(v.row_data, t.row_data), '
        '    coalesce(1.0::float8 / ($6 + v.rank), 0) + coalesce(1.0::float8 / ($6 + t.rank), 0) AS score, '
        '    v.rank, v.distance, t.rank, t.score '
        'FROM vector_leg v FULL OUTER JOIN text_leg t ON v.rel = t.rel AND v.tid = t.tid '
        'ORDER BY 2 DESC, coalesce(v.rank, t.rank) LIMIT $3',
        tbl, where_sql, vector_column, col.op, doc, vector_column::text,
        CASE col.kind WHEN 'halfvec' THEN '($1)::halfvec' ELSE '$1' END, config::text)
        USING query, params, k, greatest(4 * k, 40), query_text, rrf_k;
END $$;
