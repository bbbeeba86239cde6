"""Framework vector stores over vectorpg's collections: :mod:`vectorpg.integrations.langchain`
(``vectorpg[langchain]``) and :mod:`vectorpg.integrations.llama_index` (``vectorpg[llama-index]``).

Each is a thin adapter: documents become a collection's texts, metadata and vectors (embedded by the
framework's own embedding model), searches and filters are the collection's, and the async methods run on
:mod:`vectorpg.aio` (:class:`~vectorpg.integrations.base.CollectionPair`)."""
