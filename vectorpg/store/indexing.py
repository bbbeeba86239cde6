"""The indexes of a collection: its vector indexes (built by hand or automatically, then tuned), its text
index and its field indexes (:mod:`vectorpg.fields`).

**Indexed by default.** A collection that reaches ``PlannerConfig.auto_index_rows`` documents without a
vector index gets an HNSW index (pgvector's defaults, on the collection's metric) at the end of the
``add`` / ``upsert`` / ``ingest`` call that took it there, synchronously, with a progress bar on stderr.
Synchronously because the next search must find the index and a build in a background thread would die
with a short-lived process (a script, a notebook cell, a CLI call) and leave an invalid index behind;
``create_index(concurrently=True)`` remains the way to build one beside live writes. A collection whose
documents have text gets the full-text index hybrid search's text leg uses at the same time (without it, each
hybrid search reads every document's text: about 12x slower at 4,000 documents). Open the collection with
``auto_index=False`` to manage indexes yourself.

**Tuned by default.** Every index ``create_index`` builds is tuned for recall@10 ``TUNE_RECALL`` at once
(:func:`vectorpg.search.tuning.tune` on ``TUNE_SAMPLE`` rows), so searches reach it without a knob.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from psycopg import sql
from sqlalchemy import Engine, Table, func, select

from vectorpg import validation
from vectorpg.db.engine import driver_connection
from vectorpg.db.routing import read_bind
from vectorpg.db.translate import translating
from vectorpg.ddl.builds import BuildProgress, create_vector_index, drop_vector_index
from vectorpg.ddl.fields import create_field_index, drop_field_index, list_field_indexes
from vectorpg.fields import FieldIndex, FieldType, field_type
from vectorpg.indexes import HNSW, IndexInfo, IVFFlat, Quantization, VectorIndex, list_vector_indexes
from vectorpg.metrics import Metric, MetricSpec
from vectorpg.own_schema.tables import SCHEMA, partition_name
from vectorpg.progress import progress_bar
from vectorpg.search.hybrid import text_index
from vectorpg.search.planner import PlannerConfig
from vectorpg.search.surface import SearchSurface
from vectorpg.search.tuning import tune

#: the recall@10 a new vector index is tuned for (create_index(tune_recall=...)); collections smaller than
#: TUNE_MIN_ROWS are not tuned (an exact scan answers them), TUNE_SAMPLE rows are the tuning queries
TUNE_RECALL = 0.97
TUNE_MIN_ROWS = 1_000
TUNE_SAMPLE = 50


class CollectionIndexes:
    """Index management of :class:`~vectorpg.Collection` (a mixin: it uses the attributes below)."""

    engine: Engine
    name: str
    dimension: int
    metric: MetricSpec
    partition: Table
    surface: SearchSurface
    planner: PlannerConfig
    auto_index: bool
    _index_cache: list[IndexInfo] | None
    _field_cache: list[FieldIndex] | None

    @translating("creating a text index")
    def create_text_index(self, config: str = "english") -> str:
        """A GIN index on ``to_tsvector(config, content)`` of this collection, for :meth:`hybrid_search`."""
        name = validation.derived_name(partition_name(self.name), config, "tsv", "idx")
        with self.engine.begin() as conn:
            text_index(name, self.partition.c.content, config).create(conn, checkfirst=True)
        return name

    @translating("building a vector index")
    def create_index(
        self,
        method: HNSW | IVFFlat | None = None,
        *,
        quantization: str | Quantization = Quantization.NONE,
        concurrently: bool = False,
        progress: Callable[[BuildProgress], None] | None = None,
        tune_recall: float | None = TUNE_RECALL,
    ) -> str:
        """Build a vector index (HNSW by default) on this collection's partition; return its name.

        Build it after the bulk load. ``quantization="halfvec"`` or ``"binary"`` indexes a compact form
        of the vectors and searches re-rank the candidates on the full vectors. With ``tune_recall`` (and
        at least 1,000 documents) the new index is tuned for that recall@10 at once (:meth:`tune`: the
        smallest ``ef_search`` / ``probes`` that reaches it, which searches then use by default and the
        filtered scans widen); ``None`` skips it.
        """
        quant = Quantization(quantization)
        spec = VectorIndex(
            column="embedding",
            metric=Metric.HAMMING if quant is Quantization.BINARY else self.metric.metric,
            method=method or HNSW(),
            quantization=quant,
            dimension=self.dimension,
            cast=quant is Quantization.NONE,
        )
        name = create_vector_index(self.engine, self.partition, spec, concurrently=concurrently, progress=progress)
        self._index_cache = None
        self.surface.forget()
        if tune_recall is not None and self._rows_at_least(TUNE_MIN_ROWS):
            tune(self.surface, tune_recall, sample=TUNE_SAMPLE)
        return name

    @translating("dropping a vector index")
    def drop_index(self, name: str) -> bool:
        """Drop one of this collection's vector indexes; return whether it existed."""
        dropped = drop_vector_index(self.engine, self.partition, name)
        self._index_cache = None
        self.surface.forget()
        return dropped

    def indexes(self, *, refresh: bool = False) -> list[IndexInfo]:
        """This collection's vector indexes, read from the catalog (cached; ``refresh=True`` re-reads)."""
        if self._index_cache is None or refresh:
            with read_bind(self.engine).connect() as conn:  # a replica's catalog, in a routed read
                self._index_cache = list_vector_indexes(conn, self.partition)
        return self._index_cache

    # -- field indexes ------------------------------------------------------------------------------

    @translating("creating a field index")
    def create_field_index(self, key: str, type: str | FieldType = "keyword") -> str:
        """Index the metadata ``key`` (``"section"``, ``"author.name"``) as ``type``: ``keyword`` (equality
        and ``$in`` of strings, integers, booleans), ``integer`` / ``float`` (ranges of numbers) or ``text``
        / ``timestamp`` (ranges of strings, ISO-8601 dates); return the index name. Filters on the key then
        use the index and PostgreSQL's statistics of it; results do not change."""
        name = create_field_index(self.engine, self.partition, key, type)
        self._field_cache = None
        self.surface.forget()
        return name

    @translating("dropping a field index")
    def drop_field_index(self, key: str) -> bool:
        """Drop the field index of ``key``; return whether there was one."""
        dropped = drop_field_index(self.engine, self.partition, key)
        self._field_cache = None
        self.surface.forget()
        return dropped

    def field_indexes(self, *, refresh: bool = False) -> list[FieldIndex]:
        """This collection's field indexes, read from the catalog (cached; ``refresh=True`` re-reads)."""
        if self._field_cache is None or refresh:
            with read_bind(self.engine).connect() as conn:
                self._field_cache = list_field_indexes(conn, self.partition)
        return self._field_cache

    def ensure_field_indexes(self, wanted: Mapping[str, str | FieldType]) -> None:
        """Create the field indexes of ``wanted`` (key -> type) that do not exist yet."""
        have = {(f.key, f.type) for f in self.field_indexes()}
        for key, kind in wanted.items():
            if (key, field_type(kind)) not in have:
                self.create_field_index(key, kind)

    def indexed_fields(self) -> dict[str, FieldType]:
        """Key -> type of the valid field indexes (what the filter compiler writes conditions on)."""
        return {f.key: f.type for f in self.field_indexes() if f.valid}

    # -- indexed by default ---------------------------------------------------------------------------

    def index_if_large(self) -> str | None:
        """Build the default HNSW index if the collection has none and at least ``auto_index_rows``
        documents (see the module docstring); return its name, or ``None`` when nothing was built."""
        threshold = self.planner.auto_index_rows(self.dimension)
        # the cached list first: an indexed collection costs a write no catalog query; the catalog is read
        # again only once the collection is large enough to need an index (another process may have built it)
        if not self.auto_index or threshold <= 0 or self.indexes() or not self._rows_at_least(threshold):
            return None
        if self.indexes(refresh=True):
            return None
        # statistics for the rows just loaded (autovacuum's ANALYZE comes later): the field indexes' estimates
        # the planner decides with, and the index's own build plan, see this load, not an empty table
        with self.engine.begin() as conn:
            raw = driver_connection(conn.connection)
            raw.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SCHEMA, self.partition.name)))
        bar = progress_bar(total=100, desc=f"vectorpg: HNSW index on {self.name!r}", unit="%", disable=not _tty())
        try:
            name = self.create_index(HNSW(), progress=_bar_step(bar))
        finally:
            bar.close()
        if self._has_content():  # hybrid search's text leg: without it, each one reads every document's text
            self.create_text_index()
        return name

    def _has_content(self) -> bool:
        stmt = select(self.partition.c.id).where(self.partition.c.content.is_not(None)).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def _rows_at_least(self, rows: int) -> bool:
        """Whether the collection has at least ``rows`` documents (a count that stops there)."""
        capped = select(func.count()).select_from(select(self.partition.c.id).limit(rows).subquery())
        with self.engine.connect() as conn:
            return int(conn.scalar(capped) or 0) >= rows


def _tty() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _bar_step(bar: Any) -> Callable[[BuildProgress], None]:
    def step(reading: BuildProgress) -> None:
        done = int(100 * (reading.fraction or 0))
        if done > bar.n:
            bar.update(done - bar.n)
        bar.set_postfix(phase=reading.phase)

    return step
