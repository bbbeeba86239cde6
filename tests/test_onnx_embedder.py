"""The ONNX Runtime embedder: the packaged model's vectors, tokens and limits as PyTorch gives them, a
cached export that loads without torch, and the fallback and errors when an export cannot be made."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vectorpg
from vectorpg.embeddings import OnnxEmbedder, SentenceTransformerEmbedder, default_embedder, packaged_model_path
from vectorpg.embeddings.onnx_runtime import cache_root, export_key

pytestmark = pytest.mark.embedder

#: texts the export's own check never saw: the docstrings of standard-library modules (fixed for a given
#: Python), a question, code
MODULES = sorted(["argparse", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv",
                  "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools", "glob",
                  "gzip", "hashlib", "heapq", "hmac", "html", "http", "imaplib", "inspect", "io", "ipaddress",
                  "itertools", "json", "logging", "mailbox", "math", "mimetypes", "operator", "os", "pathlib",
                  "pickle", "platform", "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shlex",
                  "shutil", "signal", "smtplib", "socket", "sqlite3", "ssl", "statistics", "string", "struct",
                  "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback",
                  "typing", "unittest", "urllib", "uuid", "warnings", "weakref", "zipfile", "zlib"])  # fmt: skip
DOCS = [(inspect.getdoc(importlib.import_module(m)) or m)[:1500] for m in MODULES]
TEXTS = [*DOCS, "which database should I use?", "for row in cursor: print(row)"]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return SentenceTransformerEmbedder().embed(TEXTS)


def test_int8_vectors_are_the_models_vectors(torch_vectors: np.ndarray) -> None:
    model = OnnxEmbedder()
    assert model.name == "all-MiniLM-L6-v2" and model.dimension == 384 and model.backend == "onnx-int8"
    vectors = model.embed(TEXTS)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.mean() >= 0.99 and cosines.min() >= 0.98, (cosines.mean(), cosines.min())
    # What a search sees: each text's nearest neighbour among the others is the same under both.
    same = [
        int(np.argsort(-(torch_vectors[i] @ torch_vectors.T))[1] == np.argsort(-(vectors[i] @ vectors.T))[1])
        for i in range(len(TEXTS))
    ]
    assert sum(same) >= 0.85 * len(TEXTS)  # close neighbours may swap places (the benchmark: recall@10 0.92)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_float_export_equals_pytorch(torch_vectors: np.ndarray) -> None:
    model = OnnxEmbedder(quantize=False)
    assert model.backend == "onnx-fp32"
    np.testing.assert_allclose(model.embed(TEXTS), torch_vectors, atol=1e-4)


def test_tokens_and_limits_match_pytorch() -> None:
    onnx, torch = OnnxEmbedder(), SentenceTransformerEmbedder()
    assert onnx.max_tokens == torch.max_tokens == 254
    assert [onnx.count_tokens(t) for t in TEXTS] == [torch.count_tokens(t) for t in TEXTS]
    long = " ".join(TEXTS)  # past the model's 256 tokens: cut, as PyTorch cuts it
    assert onnx.count_tokens(long) > 256
    assert float(onnx.embed([long])[0] @ torch.embed([long])[0]) > 0.98
    with pytest.raises(vectorpg.InvalidInputError) as info:
        onnx.embed(["fine", "   "])
    assert info.value.row == 1


def test_the_default_is_onnx_and_the_cached_export_loads_without_torch() -> None:
    assert isinstance(default_embedder(), OnnxEmbedder)
    default_embedder().embed(["warm the cache"])
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['sentence_transformers'] = None\n"
        "from vectorpg.embeddings import default_embedder\n"
        "model = default_embedder(); print(model.backend, model.embed(['hello']).shape)\n"
    )
    env = {**os.environ, "VECTORPG_CACHE_DIR": str(cache_root())}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["onnx-int8", "(1,", "384)"]
    code = "from vectorpg.embeddings import default_embedder; print(type(default_embedder()).__name__)"
    for backend, expected in [("torch", "SentenceTransformerEmbedder"), ("onnx", "OnnxEmbedder")]:
        env = {**os.environ, "VECTORPG_EMBED_BACKEND": backend}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        assert out.stdout.strip() == expected


def test_a_model_that_cannot_be_exported(tmp_path: Path) -> None:
    folder = tmp_path / "odd-model"
    shutil.copytree(packaged_model_path(), folder)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([*modules, {"path": "3_Dense", "type": "x.models.Dense"}]))
    with pytest.raises(vectorpg.InvalidArgumentError, match=r"odd-model.*Transformer \+ Pooling"):
        OnnxEmbedder(folder).embed(["text"])
    fallback = SentenceTransformerEmbedder()
    model = OnnxEmbedder(folder, fallback=fallback)
    with pytest.warns(vectorpg.PerformanceWarning, match="ONNX export of odd-model failed"):
        vectors = model.embed(["text"])
    np.testing.assert_allclose(vectors, fallback.embed(["text"]), atol=1e-6)
    assert model.backend.startswith("fallback") and model.max_tokens == 254


def test_an_export_that_fails_inside_torch_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "broken-weights"
    shutil.copytree(packaged_model_path(), folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setenv("VECTORPG_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(
        vectorpg.ConfigurationError, match=r"ONNX export of broken-weights failed.*VECTORPG_EMBED_BACKEND"
    ):
        OnnxEmbedder(folder).embed(["text"])
    assert not list((tmp_path / "cache" / "onnx").glob("broken-weights-*"))  # nothing half-made is cached


def test_the_cache_key_follows_the_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"1234")
    before = export_key(tmp_path)
    assert export_key(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"12345")
    assert export_key(tmp_path) != before
