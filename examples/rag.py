"""The whole retrieval-augmented generation loop: ingest a folder, retrieve for a question, build the prompt,
hand it to a model.

    python examples/rag.py "How do I keep searches fast with filters?"            # this repository's docs
    python examples/rag.py "What is a generator?" /usr/share/doc/python3.11/html/_sources/tutorial

``generate`` is any callable ``str -> str``: here a local stub that prints the prompt (no network). Swap in
your model's client, for example ``lambda p: client.responses.create(model=..., input=p).output_text``.
Uses the embedded PostgreSQL unless VECTORPG_URL is set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import vectorpg
from vectorpg.rag.retrieval import build_prompt

HERE = Path(__file__).resolve().parent.parent


def stub_generate(prompt: str) -> str:
    """Stands in for a language model: shows what it would be sent."""
    print("----- prompt sent to the model -----")
    print(prompt)
    print("------------------------------------")
    return "(a model's answer would be here, citing the sources as [1], [2]...)"


def answer(question: str, folders: list[Path], generate: Callable[[str], str] = stub_generate) -> str:
    db = vectorpg.connect()
    docs = db.collection("rag_example")  # the packaged all-MiniLM-L6-v2 model
    report = docs.ingest(folders, glob="**/*.*", progress=False)  # unchanged files cost nothing the next time
    print(f"ingested: {report.chunks} chunks ({report.new} new, {report.embedded} embedded)")
    chunks = docs.retrieve(question, k=4, max_tokens=600)
    for n, chunk in enumerate(chunks, 1):
        print(f"[{n}] {chunk.citation}  (distance {chunk.distance:.3f}, {chunk.tokens} tokens)")
    reply = generate(build_prompt(question, chunks))
    db.close()
    return reply


if __name__ == "__main__":
    question = sys.argv[1] if len(sys.argv) > 1 else "How do I keep searches fast with filters?"
    folders = [Path(p) for p in sys.argv[2:]] or [HERE / "docs", HERE / "README.md"]
    print(answer(question, folders))
