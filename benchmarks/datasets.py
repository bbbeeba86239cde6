"""The datasets of the suite: real ones available offline, and a documented synthetic generator for scale.

- **Fashion-MNIST** (784-d, the ann-benchmarks set): Debian package ``dataset-fashion-mnist``; 60,000 train
  images are the rows, queries are held-out test images; the label (10 classes) is a 10% filter.
- **Python docs** (384-d): paragraphs of the Python 3.11 documentation (package ``python3.11-doc``) embedded
  with all-MiniLM-L6-v2, cached in ``benchmarks/.cache`` (``benchmarks/corpus.py``).
- **Clustered synthetic** (384-d): :func:`clustered`.

A missing Debian package makes its dataset unavailable: the suite says which and how to install it, and
goes on with the others.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    name: str
    rows: np.ndarray
    queries: np.ndarray
    metric: str
    #: a category per row and per query (for filters), if the dataset has one
    labels: np.ndarray | None = None
    query_labels: np.ndarray | None = None
    note: str = ""


def clustered(n: int, dim: int = 384, *, clusters: int = 100, queries: int = 200, seed: int = 0) -> Dataset:
    """``n`` unit vectors around ``clusters`` random centres, like sentence embeddings of many topics.

    Centres are uniform on the sphere; each row is its centre plus Gaussian noise of standard deviation
    ``0.6 / sqrt(dim)`` per coordinate (the noise norm is 0.6 times the centre's), then normalised. Cluster
    sizes follow a Zipf-like law (the largest is about 10x the median). Queries are drawn the same way
    and are not rows. The row's cluster is its label.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.choice(clusters, size=count, p=weights)
        out = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, 100_000):
            part = labels[start : start + 100_000]
            block = centres[part] + rng.normal(scale=0.6 / np.sqrt(dim), size=(len(part), dim)).astype(np.float32)
            out[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out, labels

    rows, labels = draw(n)
    qs, q_labels = draw(queries)
    return Dataset(f"clustered-{dim}d-{n // 1000}k", rows, qs, "cosine", labels, q_labels, clustered.__doc__ or "")


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(queries: int = 1000) -> Dataset | None:
    """The 60,000 train images (784 floats 0..255) as rows, the first ``queries`` test images as queries."""
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        return None
    rows = _idx(FASHION / "train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    labels = _idx(FASHION / "train-labels-idx1-ubyte.gz").astype(np.int64)
    tests = _idx(FASHION / "t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)[:queries]
    test_labels = _idx(FASHION / "t10k-labels-idx1-ubyte.gz").astype(np.int64)[:queries]
    return Dataset("fashion-mnist-784", rows, tests, "l2", labels, test_labels, "ann-benchmarks' Fashion-MNIST")


def python_docs(queries: int = 200, *, embed_if_missing: bool = True) -> Dataset | None:
    """Paragraphs of the Python docs (384-d); the last ``queries`` paragraphs are held out as queries."""
    from benchmarks import corpus

    if not corpus.DOCS.exists():
        return None
    if not embed_if_missing and not (corpus.CACHE / "pydocs_minilm.npy").exists():
        return None
    paragraphs, vectors = corpus.python_docs()
    sections = sorted({p["section"] for p in paragraphs})
    labels = np.array([sections.index(p["section"]) for p in paragraphs])
    return Dataset(
        "python-docs-minilm-384",
        vectors[:-queries],
        vectors[-queries:],
        "cosine",
        labels[:-queries],
        labels[-queries:],
        "all-MiniLM-L6-v2 embeddings of the Python 3.11 docs",
    )


MISSING = {
    "fashion-mnist-784": "apt-get install dataset-fashion-mnist",
    "python-docs-minilm-384": "apt-get install python3.11-doc",
}
