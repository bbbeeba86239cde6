"""Real corpora for the benchmarks, embedded once with the default model and cached on disk.

- ``python_docs()``: paragraphs of the Python 3.11 documentation sources from the Debian package
  ``python3.11-doc`` (``/usr/share/doc/python3.11/html/_sources``), about 25,000 of them, each with its page
  (``library/os``) and section (``library``): natural categories from one row to half the corpus.
- The standard-library docstrings of the quickstart live in ``benchmarks/indexes.py``.

Embeddings are cached in ``benchmarks/.cache/`` so reruns do not re-embed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def python_docs_paragraphs(min_chars: int = 120, max_chars: int = 1000) -> list[dict[str, str]]:
    """Paragraphs (blank-line separated blocks of prose) of the documentation sources, in a fixed order."""
    if not DOCS.exists():
        raise SystemExit("the Python documentation sources are missing: apt-get install python3.11-doc")
    out = []
    for path in sorted(DOCS.rglob("*.rst.txt")):
        page = path.relative_to(DOCS).as_posix().removesuffix(".rst.txt")
        for block in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            text = " ".join(line.strip() for line in block.strip().splitlines())
            if len(text) >= min_chars and not text.startswith(("..", "::", ">>>", "|", "+-", "==", "--")):
                out.append({"page": page, "section": page.split("/")[0], "text": text[:max_chars]})
    return out


def python_docs() -> tuple[list[dict[str, str]], np.ndarray]:
    """The paragraphs and their all-MiniLM-L6-v2 embeddings (computed once, then read from the cache)."""
    CACHE.mkdir(exist_ok=True)
    meta_path, vec_path = CACHE / "pydocs.json", CACHE / "pydocs_minilm.npy"
    paragraphs = python_docs_paragraphs()
    if meta_path.exists() and vec_path.exists() and json.loads(meta_path.read_text()) == paragraphs:
        return paragraphs, np.load(vec_path)
    from tqdm import tqdm

    from vectorpg.embeddings import default_embedder

    embedder = default_embedder()
    print(f"embedding {len(paragraphs)} paragraphs of the Python docs once (cached for later runs)...", file=sys.stderr)
    with tqdm(total=len(paragraphs), unit="para") as bar:
        vectors = embedder.embed([p["text"] for p in paragraphs], progress=bar.update)
    np.save(vec_path, vectors)
    meta_path.write_text(json.dumps(paragraphs))
    return paragraphs, vectors


if __name__ == "__main__":
    paragraphs, vectors = python_docs()
    print(len(paragraphs), vectors.shape)
