"""An ONNX Runtime embedder for sentence-transformers models, the default when ``onnxruntime`` is installed.

The model is exported once from its own weights, on this machine, and cached (``$VECTORPG_CACHE_DIR``, else
``$XDG_CACHE_HOME/vectorpg`` or ``~/.cache/vectorpg``, in ``onnx/<model>-<key>``; the key changes with the
weights and the versions that made the export). The export, which needs torch once:

1. ``torch.onnx.export`` of the encoder with eager attention, so that ONNX Runtime can fuse it;
2. ONNX Runtime's transformer optimiser (attention, LayerNorm and GELU fusions) for BERT-like models;
3. int8 dynamic quantisation of the weight matrices (per channel; ``reduce_range`` for CPUs without VNNI,
   whose 16-bit accumulation would saturate), leaving out the fused attention and the feed-forward output
   layers, whose rounding errors were the large ones;
4. a check of the int8 model against the float one on :data:`CHECK_TEXTS`: it is kept only when the mean
   cosine is at least 0.99 and the lowest at least 0.98, else the float model is used (``meta.json`` keeps
   the figures).

Loading a cached export needs only ``onnxruntime``, ``tokenizers`` and NumPy: no torch, about a second.
Pooling (mean or CLS) and normalisation follow the model's own ``modules.json``, so vectors match the
PyTorch model's (``benchmarks/embedding_backends.py`` measures how closely, and how fast).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no lock; a race costs a second export, and the rename keeps one
    fcntl = None  # type: ignore[assignment]

from vectorpg.embeddings.base import check_texts, model_name, packaged_model_path
from vectorpg.embeddings.pytorch import SentenceTransformerEmbedder
from vectorpg.errors import (
    ConfigurationError,
    InvalidArgumentError,
    MissingDependencyError,
    PerformanceWarning,
    VectorPgError,
)

EXPORT_VERSION = 1
MIN_MEAN_COSINE, MIN_COSINE = 0.99, 0.98

#: the fixed texts the int8 model is checked on: short and long, prose, code, lists and numbers
CHECK_TEXTS = [
    "How do I sort a list in Python?",
    "PostgreSQL is a relational database with a rich extension system.",
    "The cat sat on the mat.",
    "pgvector adds vector similarity search to PostgreSQL: L2, inner product and cosine distance.",
    "SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5;",
    "def add(a, b):\n    return a + b",
    "Bananas are yellow fruit rich in potassium.",
    "Release notes: fixed a crash on start-up, 12% faster builds, new --verbose flag.",
    "Die Katze schläft auf dem Sofa.",
    "HNSW builds a layered proximity graph; IVFFlat partitions vectors into k-means lists.",
    "1, 2, 3, 5, 8, 13, 21, 34",
    "Retrieval-augmented generation hands the most relevant chunks of text to a language model.",
]
CHECK_TEXTS += [" ".join(CHECK_TEXTS[i:] + CHECK_TEXTS[:i]) * 2 for i in range(0, len(CHECK_TEXTS), 3)]


def onnx_available() -> bool:
    """Whether ONNX Runtime and the tokenizers package can be imported (nothing is imported here)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("tokenizers") is not None


def cache_root() -> Path:
    """Where exports are cached: ``$VECTORPG_CACHE_DIR``, else the per-user cache directory."""
    if env := os.environ.get("VECTORPG_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vectorpg"


class OnnxEmbedder:
    """A sentence-transformers model run by ONNX Runtime: same ``name`` and vectors as the PyTorch model.

    ``model`` is a local sentence-transformers folder (default: the packaged all-MiniLM-L6-v2).
    ``quantize``: int8 when it passes the export's accuracy check (the default); ``False``: the float model.
    ``fallback``: an embedder to use, with a :class:`PerformanceWarning`, if the export cannot be made.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        quantize: bool = True,
        batch_size: int = 16,
        name: str | None = None,
        fallback: SentenceTransformerEmbedder | None = None,
    ) -> None:
        self._model_ref = model
        self._name = model_name(model, name)
        self.quantize = quantize
        self.batch_size = batch_size
        self.fallback = fallback
        self._lock = threading.Lock()
        self._backend: _OnnxModel | SentenceTransformerEmbedder | None = None

    @property
    def name(self) -> str:
        return self._name

    def _load(self) -> _OnnxModel | SentenceTransformerEmbedder:
        """The exported model, loaded once (exported first if need be), or the fallback embedder."""
        with self._lock:
            if self._backend is None:
                path = Path(packaged_model_path() if self._model_ref is None else self._model_ref)
                try:
                    folder = export(path, self._name)
                    meta = json.loads((folder / "meta.json").read_text())
                    precision = "int8" if meta["int8_ok"] and self.quantize else "fp32"
                    self._backend = _OnnxModel(path, folder / f"model.{precision}.onnx", meta)
                except Exception as exc:  # an export is torch's and ONNX Runtime's code: anything may fail
                    if self.fallback is None and isinstance(exc, VectorPgError):
                        raise
                    if self.fallback is None:
                        raise ConfigurationError(
                            f"the ONNX export of {self._name} failed ({type(exc).__name__}: {exc}); use "
                            "SentenceTransformerEmbedder(...) or set VECTORPG_EMBED_BACKEND=torch"
                        ) from exc
                    warnings.warn(
                        f"the ONNX export of {self._name} failed ({exc}); using {self.fallback!r} instead",
                        PerformanceWarning,
                        stacklevel=3,
                    )
                    self._backend = self.fallback
            return self._backend

    @property
    def backend(self) -> str:
        """``"onnx-int8"``, ``"onnx-fp32"`` or the fallback's name: what :meth:`embed` runs on."""
        backend = self._load()
        return f"onnx-{backend.precision}" if isinstance(backend, _OnnxModel) else f"fallback: {backend!r}"

    @property
    def dimension(self) -> int:
        return self._load().dimension

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads, in its tokens (without the two special tokens); longer is cut."""
        return self._load().max_tokens

    def count_tokens(self, text: str) -> int:
        """Number of the model's tokens in ``text`` (what chunking measures chunks in)."""
        return self._load().count_tokens(text)

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size``, by token length; ``progress(n)`` per batch."""
        backend = self._load()
        if not isinstance(backend, _OnnxModel):
            return backend.embed(texts, progress=progress)
        items = check_texts(texts)
        out = np.empty((len(items), backend.dimension), dtype=np.float32)
        encodings = backend.tokenizer.encode_batch(items)
        order = sorted(range(len(items)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = backend.run([encodings[i] for i in chunk])
            if progress is not None:
                progress(len(chunk))
        return out

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self._name!r})"


class _OnnxModel:
    """An export's session and tokenizers, and the model's pooling and limits."""

    def __init__(self, model: Path, file: Path, meta: dict[str, Any]) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.precision = file.suffixes[0].lstrip(".")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dimension, self.pooling, self.normalize = meta["dimension"], meta["pooling"], meta["normalize"]
        self.max_length = int(meta["max_length"])
        self.counter = Tokenizer.from_file(str(model / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()
        self.tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    @property
    def max_tokens(self) -> int:
        return max(1, self.max_length - 2)

    def count_tokens(self, text: str) -> int:
        return len(self.counter.encode(text, add_special_tokens=False).ids)

    def run(self, encodings: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
        return pool(hidden, mask, self.pooling, self.normalize)


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Token states to one vector a text: the mean over real tokens, or the first token's state."""
    if pooling == "cls":
        vectors = hidden[:, 0, :]
    else:
        weights = mask[..., None].astype(np.float32)
        vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def model_facts(model: Path) -> dict[str, Any]:
    """Pooling, normalisation, dimension and input length from a sentence-transformers folder."""
    try:
        modules = json.loads((model / "modules.json").read_text())
        config = json.loads((model / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"{model} is not a sentence-transformers model folder ({exc})") from exc
    types = {m["type"].rsplit(".", 1)[-1]: m["path"] for m in modules}
    if set(types) - {"Transformer", "Pooling", "Normalize"} or types.get("Transformer", "") != "":
        raise InvalidArgumentError(f"{model}: only a Transformer + Pooling (+ Normalize) model can be exported")
    pooling_config = json.loads((model / types.get("Pooling", "1_Pooling") / "config.json").read_text())
    modes = [k for k, on in pooling_config.items() if k.startswith("pooling_mode") and on]
    if modes not in (["pooling_mode_mean_tokens"], ["pooling_mode_cls_token"]):
        raise InvalidArgumentError(f"{model}: pooling {modes} is not supported (mean or CLS)")
    bert = (
        json.loads((model / "sentence_bert_config.json").read_text())
        if (model / "sentence_bert_config.json").exists()
        else {}
    )
    return {
        "dimension": int(pooling_config["word_embedding_dimension"]),
        "pooling": "cls" if modes == ["pooling_mode_cls_token"] else "mean",
        "normalize": "Normalize" in types,
        "max_length": int(bert.get("max_seq_length") or config.get("max_position_embeddings", 512)),
        "model_type": config.get("model_type"),
        "heads": config.get("num_attention_heads"),
        "hidden": config.get("hidden_size"),
    }


def export_key(model: Path) -> str:
    """Changes with the model's files (size and mtime) and the versions of what makes the export."""
    parts = [str(EXPORT_VERSION), str(model.resolve())]
    for file in sorted(model.iterdir()):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    for package in ("onnxruntime", "torch", "transformers"):
        try:
            parts.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package}=none")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def export(model: Path, label: str | None = None) -> Path:
    """The cached export folder of ``model``, made first if it is not there (see the module)."""
    if not onnx_available():
        raise MissingDependencyError("onnxruntime", "embed", "the ONNX embedder")
    facts = model_facts(model)
    folder = cache_root() / "onnx" / f"{label or model.resolve().name}-{export_key(model)}"
    if (folder / "meta.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process exports; the others wait and reuse its export
        if (folder / "meta.json").exists():
            return folder
        from vectorpg.embeddings.onnx_export import build

        work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
        try:
            build(model, work, facts)
            meta = {**facts, **int8_check(model, work, facts)}
            (work / "meta.json").write_text(json.dumps(meta, indent=2))
            shutil.rmtree(folder, ignore_errors=True)  # a half-written folder of a crashed export
            work.rename(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder


def int8_check(model: Path, work: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """The int8 model's cosines to the float one on :data:`CHECK_TEXTS`, and whether it passes."""
    vectors = []
    for precision in ("fp32", "int8"):
        loaded = _OnnxModel(model, work / f"model.{precision}.onnx", facts)
        vectors.append(loaded.run(loaded.tokenizer.encode_batch(CHECK_TEXTS)))
    ref, got = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors)
    cosines = (ref * got).sum(axis=1)
    mean, low = float(cosines.mean()), float(cosines.min())
    return {"int8_ok": mean >= MIN_MEAN_COSINE and low >= MIN_COSINE, "int8_mean_cosine": mean, "int8_min_cosine": low}
