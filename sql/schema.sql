-- vectorpg's tables and indexes. GENERATED from vectorpg/own_schema/tables.py by `vectorpg schema`: do not
-- edit; change the models and regenerate (tests/test_migrations.py fails while they differ).
-- Idempotent, and it upgrades: columns added since a table was created are added (DO blocks).
-- Apply with sql/install.sql, Database.setup() or `alembic upgrade head`.

CREATE SCHEMA IF NOT EXISTS "vectorpg";

CREATE TABLE IF NOT EXISTS vectorpg.collections (
	name TEXT NOT NULL,
	dimension INTEGER NOT NULL,
	metric TEXT NOT NULL,
	embedder TEXT,
	next_embedder TEXT,
	next_dimension INTEGER,
	pending_indexes JSONB,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	PRIMARY KEY (name),
	CONSTRAINT collections_dimension_positive CHECK (dimension > 0)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.collections'::regclass
                   AND attname = 'embedder' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."collections" ADD COLUMN embedder TEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.collections'::regclass
                   AND attname = 'next_embedder' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."collections" ADD COLUMN next_embedder TEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.collections'::regclass
                   AND attname = 'next_dimension' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."collections" ADD COLUMN next_dimension INTEGER;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.collections'::regclass
                   AND attname = 'pending_indexes' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."collections" ADD COLUMN pending_indexes JSONB;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.collections'::regclass
                   AND attname = 'created_at' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."collections" ADD COLUMN created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL;
    END IF;
END $$;

COMMENT ON TABLE vectorpg.collections IS 'vectorpg collections: one partition of vectorpg.documents each';

COMMENT ON COLUMN vectorpg.collections.embedder IS 'name of the model that embeds the collection''s text';

COMMENT ON COLUMN vectorpg.collections.next_embedder IS 'model a reembed() in progress moves the collection to';

COMMENT ON COLUMN vectorpg.collections.next_dimension IS 'its dimension';

COMMENT ON COLUMN vectorpg.collections.pending_indexes IS 'vector indexes that reembed() dropped at its swap and has yet to build again';

CREATE TABLE IF NOT EXISTS vectorpg.documents (
	collection TEXT NOT NULL,
	id TEXT NOT NULL,
	content TEXT,
	metadata JSONB DEFAULT '{}'::jsonb NOT NULL,
	embedding VECTOR NOT NULL,
	content_hash TEXT,
	embedding_next VECTOR,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT documents_pkey PRIMARY KEY (collection, id)
)
 PARTITION BY LIST (collection);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.documents'::regclass
                   AND attname = 'content' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."documents" ADD COLUMN content TEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.documents'::regclass
                   AND attname = 'metadata' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."documents" ADD COLUMN metadata JSONB DEFAULT '{}'::jsonb NOT NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.documents'::regclass
                   AND attname = 'content_hash' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."documents" ADD COLUMN content_hash TEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.documents'::regclass
                   AND attname = 'embedding_next' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."documents" ADD COLUMN embedding_next VECTOR;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.documents'::regclass
                   AND attname = 'created_at' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."documents" ADD COLUMN created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.documents'::regclass
                   AND attname = 'updated_at' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."documents" ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL;
    END IF;
END $$;

CREATE INDEX IF NOT EXISTS documents_metadata_idx ON vectorpg.documents USING gin (metadata jsonb_path_ops);

COMMENT ON TABLE vectorpg.documents IS 'documents of every collection; LIST-partitioned by collection';

COMMENT ON COLUMN vectorpg.documents.content_hash IS 'sha256 of content; unchanged text is not re-embedded';

COMMENT ON COLUMN vectorpg.documents.embedding_next IS 'the new model''s vector while reembed() runs';

CREATE TABLE IF NOT EXISTS vectorpg.embedding_cache (
	model TEXT NOT NULL,
	content_hash TEXT NOT NULL,
	embedding VECTOR NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	PRIMARY KEY (model, content_hash)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.embedding_cache'::regclass
                   AND attname = 'created_at' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."embedding_cache" ADD COLUMN created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL;
    END IF;
END $$;

COMMENT ON TABLE vectorpg.embedding_cache IS 'every text a model embedded, by content hash: never embedded twice by the same model';

COMMENT ON COLUMN vectorpg.embedding_cache.content_hash IS 'sha256 of the embedded text';

CREATE TABLE IF NOT EXISTS vectorpg.index_tuning (
	table_name TEXT NOT NULL,
	index_name TEXT NOT NULL,
	target FLOAT NOT NULL,
	k INTEGER NOT NULL,
	knob TEXT NOT NULL,
	value INTEGER NOT NULL,
	measured_recall FLOAT NOT NULL,
	queries INTEGER NOT NULL,
	tuned_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	PRIMARY KEY (table_name, index_name, target)
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'vectorpg.index_tuning'::regclass
                   AND attname = 'tuned_at' AND NOT attisdropped) THEN
        ALTER TABLE "vectorpg"."index_tuning" ADD COLUMN tuned_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL;
    END IF;
END $$;

COMMENT ON TABLE vectorpg.index_tuning IS 'search settings tuned by vectorpg.tune(): every process applies them';

COMMENT ON COLUMN vectorpg.index_tuning.target IS 'recall@k target the value was tuned for';

COMMENT ON COLUMN vectorpg.index_tuning.knob IS 'ef_search or probes';
