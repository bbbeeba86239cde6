"""Chunking: structure first, token limits, overlap, offsets and stable ids (no database)."""

from __future__ import annotations

import itertools

import pytest

import vectorpg
from vectorpg.rag.chunking import Chunker, approximate_tokens, chunk_id, chunk_text

MARKDOWN = (
    "Intro before any heading.\n\n"
    "# Guide\n\n"
    "Short paragraph.\n\n"
    "## Install\n\n"
    "```\n# a comment in code, not a heading\npip install vectorpg\n```\n\n"
    + " ".join(f"Sentence {i} says something useful." for i in range(80))
    + "\n\n### Linux\n\nLast words.\n"
)

RST = """Title
=====

Body of the title section.

Sub
---

Body of the sub section.

=========
Overlined
=========

Third body.

Second
======

Back at the first level.
"""


def words(text: str) -> int:
    return len(text.split())


def test_headings_cut_sections_and_chunks_keep_their_heading_path() -> None:
    chunks = chunk_text(MARKDOWN, source="g.md", max_tokens=60, overlap=10, fmt="markdown")
    headings = [c.heading for c in chunks]
    assert headings[0] is None and headings[1] == "Guide"
    assert "Guide > Install" in headings and headings[-1] == "Guide > Install > Linux"
    assert not any("comment in code" in (c.heading or "") for c in chunks)  # code is not a heading
    assert chunks[-1].text == "Last words."
    for c in chunks:
        assert MARKDOWN[c.start : c.end] == c.text  # offsets point into the document


def test_token_limit_and_overlap() -> None:
    chunks = chunk_text(MARKDOWN, source="g.md", max_tokens=60, overlap=10, fmt="markdown")
    assert all(c.tokens <= 60 for c in chunks)
    install = [c for c in chunks if c.heading == "Guide > Install"]
    assert len(install) > 3
    for before, after in itertools.pairwise(install):
        assert after.start < before.end  # the next chunk starts inside the previous one
        shared = MARKDOWN[after.start : before.end]
        assert shared.endswith(".") and approximate_tokens(shared) <= 10


def test_a_custom_tokenizer_sets_the_sizes() -> None:
    chunks = Chunker(max_tokens=20, overlap=0, count_tokens=words).split(MARKDOWN, "g.md", "markdown")
    assert all(words(c.text) <= 20 for c in chunks)
    assert max(words(c.text) for c in chunks) > 12  # packed, not one sentence per chunk
    assert all(c.tokens == words(c.text) for c in chunks)


def test_long_sentences_and_words_are_split_too() -> None:
    text = "word " * 500 + "\n\n" + "x" * 3000
    chunks = Chunker(max_tokens=50, overlap=0).split(text, "long.txt")
    assert all(c.tokens <= 50 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_restructuredtext_titles() -> None:
    """Levels follow the order in which adornment styles first appear (a new style is one level deeper)."""
    chunks = chunk_text(RST, source="t.rst", fmt="rst")
    assert [(c.heading, c.text) for c in chunks] == [
        ("Title", "Body of the title section."),
        ("Title > Sub", "Body of the sub section."),
        ("Title > Sub > Overlined", "Third body."),
        ("Second", "Back at the first level."),
    ]


def test_deterministic_ids_from_source_position_and_content() -> None:
    first = chunk_text(MARKDOWN, source="g.md", max_tokens=60, fmt="markdown")
    again = chunk_text(MARKDOWN, source="g.md", max_tokens=60, fmt="markdown")
    assert first == again
    assert len({c.id for c in first}) == len(first)
    other_source = chunk_text(MARKDOWN, source="h.md", max_tokens=60, fmt="markdown")
    assert not {c.id for c in first} & {c.id for c in other_source}
    assert first[2].id == chunk_id("g.md", 2, first[2].text)
    edited = chunk_text(
        MARKDOWN.replace("Last words.", "Other last words."), source="g.md", max_tokens=60, fmt="markdown"
    )
    assert [c.id for c in edited][:-1] == [c.id for c in first][:-1] and edited[-1].id != first[-1].id


def test_metadata_links_back() -> None:
    chunk = chunk_text("# A\n\nbody", source="s.md", fmt="markdown")[0]
    assert chunk.metadata() == {"source": "s.md", "chunk": 0, "start": 5, "end": 9, "heading": "A", "tokens": 1}


@pytest.mark.parametrize(("max_tokens", "overlap"), [(4, 0), (100, 60), (100, -1), (True, 0), (100, 1.5)])
def test_bad_settings(max_tokens: object, overlap: object) -> None:
    with pytest.raises(vectorpg.InvalidArgumentError):
        Chunker(max_tokens, overlap)  # type: ignore[arg-type]


def test_unknown_format() -> None:
    with pytest.raises(vectorpg.InvalidArgumentError, match="fmt"):
        chunk_text("x", fmt="docx")


@pytest.mark.embedder
def test_the_default_models_tokenizer() -> None:
    from vectorpg.embeddings import default_embedder

    model = default_embedder()
    chunks = Chunker(max_tokens=64, overlap=8, count_tokens=model.count_tokens).split(MARKDOWN, "g.md", "markdown")
    assert all(model.count_tokens(c.text) <= 64 for c in chunks)
    assert model.max_tokens == 254
