-- vectorpg's tables and indexes. GENERATED from vectorpg/models.py by `python -m vectorpg.schema`:
-- do not edit; change the models and regenerate (tests/test_schema.py fails while they differ).
-- Idempotent. Apply with sql/install.sql, Database.setup() or `alembic upgrade head`.

CREATE SCHEMA IF NOT EXISTS "vectorpg";

CREATE TABLE IF NOT EXISTS vectorpg.collections (
	name TEXT NOT NULL,
	dimension INTEGER NOT NULL,
	metric TEXT NOT NULL,
	embedder TEXT,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	PRIMARY KEY (name),
	CONSTRAINT collections_dimension_positive CHECK (dimension > 0)
);

COMMENT ON TABLE vectorpg.collections IS 'vectorpg collections: one partition of vectorpg.documents each';

COMMENT ON COLUMN vectorpg.collections.embedder IS 'name of the model that embeds the collection''s text';

CREATE TABLE IF NOT EXISTS vectorpg.documents (
	collection TEXT NOT NULL,
	id TEXT NOT NULL,
	content TEXT,
	metadata JSONB DEFAULT '{}'::jsonb NOT NULL,
	embedding VECTOR NOT NULL,
	content_hash TEXT,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	CONSTRAINT documents_pkey PRIMARY KEY (collection, id)
)
 PARTITION BY LIST (collection);

CREATE INDEX IF NOT EXISTS documents_metadata_idx ON vectorpg.documents USING gin (metadata jsonb_path_ops);

COMMENT ON TABLE vectorpg.documents IS 'documents of every collection; LIST-partitioned by collection';

COMMENT ON COLUMN vectorpg.documents.content_hash IS 'sha256 of content; unchanged text is not re-embedded';

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

COMMENT ON TABLE vectorpg.index_tuning IS 'search settings tuned by vectorpg.tune(): every process applies them';

COMMENT ON COLUMN vectorpg.index_tuning.target IS 'recall@k target the value was tuned for';

COMMENT ON COLUMN vectorpg.index_tuning.knob IS 'ef_search or probes';
