"""Retrieval for prompts: the chunks to put in a language model's prompt, and the prompt itself.

::

    chunks = docs.retrieve("How do I rotate the logs?", k=5, max_tokens=1000)
    prompt = build_prompt("How do I rotate the logs?", chunks)
    answer = generate(prompt)          # any model: a callable str -> str

:func:`retrieve` searches with maximal marginal relevance (near-duplicate chunks crowd out less), keeps
the chunks in rank order while they fit in ``max_tokens`` (counted with the embedder's tokenizer), and
returns each with its source, heading and score. :func:`build_prompt` numbers them ``[1]``, ``[2]``...
so that the answer can cite them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vectorpg.errors import InvalidArgumentError
from vectorpg.rag.chunking import approximate_tokens

if TYPE_CHECKING:
    from vectorpg.store.collection import Collection

DEFAULT_TEMPLATE = """Answer the question using only the numbered sources below. Cite the sources you use \
as [1], [2]... If the sources do not contain the answer, say so.

Sources:
{context}

Question: {question}
Answer:"""


@dataclass(frozen=True)
class RetrievedChunk:
    """A chunk chosen for a prompt."""

    id: str
    text: str
    #: where it comes from (file path or URI) and where in it
    source: str | None
    heading: str | None
    chunk: int | None
    #: distance to the question (the collection's metric; smaller is nearer)
    distance: float
    tokens: int
    metadata: Mapping[str, Any]

    @property
    def citation(self) -> str:
        """``source › heading`` (or the id when the chunk has no source)."""
        where = self.source or self.id
        return f"{where} › {self.heading}" if self.heading else where


def retrieve(
    collection: Collection,
    question: str,
    k: int = 5,
    *,
    where: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    diversity: float | None = 0.3,
    fetch_k: int | None = None,
) -> list[RetrievedChunk]:
    """The best ``k`` chunks for ``question``, diversified, within ``max_tokens`` (see the module)."""
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidArgumentError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    hits = collection.search(question, k, where=where, diversity=diversity, fetch_k=fetch_k)
    embedder = collection.embedder
    count = getattr(embedder, "count_tokens", None) or approximate_tokens
    chosen: list[RetrievedChunk] = []
    used = 0
    for hit in hits:
        text = hit.content or ""
        tokens = int(count(text))
        if max_tokens is not None and used + tokens > max_tokens:
            continue  # a shorter chunk further down may still fit
        used += tokens
        meta = hit.metadata or {}
        chosen.append(
            RetrievedChunk(
                hit.id, text, meta.get("source"), meta.get("heading"), meta.get("chunk"), hit.distance, tokens, meta
            )
        )
    return chosen


def build_prompt(question: str, chunks: Sequence[RetrievedChunk], template: str = DEFAULT_TEMPLATE) -> str:
    """The prompt: ``template`` with ``{context}`` (the chunks, numbered, with their sources) and
    ``{question}`` filled in."""
    if "{context}" not in template or "{question}" not in template:
        raise InvalidArgumentError("the template needs {context} and {question}")
    context = "\n\n".join(f"[{n}] ({c.citation})\n{c.text.strip()}" for n, c in enumerate(chunks, 1))
    return template.replace("{context}", context or "(no sources found)").replace("{question}", question.strip())
