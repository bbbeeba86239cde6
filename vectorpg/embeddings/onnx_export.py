"""Exporting a sentence-transformers model to ONNX (``model.fp32.onnx``) and its int8 copy (``model.int8.onnx``).

Needs torch and transformers, once per model and version (:mod:`vectorpg.embeddings.onnx_runtime` caches the result
and checks the int8 copy's accuracy).
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from vectorpg.errors import MissingDependencyError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def build(model: Path, work: Path, facts: dict[str, Any]) -> None:
    """Write ``model.fp32.onnx`` and ``model.int8.onnx`` of ``model`` into ``work``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise MissingDependencyError("torch", "embed", "exporting the model to ONNX (once)") from exc
    from transformers.utils import logging as transformers_logging

    if sys.stderr.isatty():
        print(f"vectorpg: exporting the model in {model} to ONNX, once (about 20 s; then cached)", file=sys.stderr)
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # its "Loading weights" bar
    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime's optimiser fuses into Attention.
    encoder = AutoModel.from_pretrained(str(model), attn_implementation="eager").eval()
    names = [n for n in INPUTS if n in inspect.signature(encoder.forward).parameters]

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = encoder

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(names, tensors, strict=True))).last_hidden_state

    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    raw = work / "model.raw.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            Encoder(), sample, str(raw), input_names=names, output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    fp32 = work / "model.fp32.onnx"
    if facts["model_type"] == "bert" and facts["heads"] and facts["hidden"]:
        from onnxruntime.transformers.optimizer import optimize_model

        optimize_model(
            str(raw), model_type="bert", num_heads=facts["heads"], hidden_size=facts["hidden"]
        ).save_model_to_file(str(fp32))
        raw.unlink()
    else:
        raw.rename(fp32)
    quantize(fp32, work / "model.int8.onnx")


def quantize(fp32: Path, int8: Path) -> None:
    """int8 weights for the MatMuls but the feed-forward outputs, and no quantised attention (see the module
    of :mod:`vectorpg.embeddings.onnx_runtime`)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep = [
        n.name
        for n in graph.node
        if n.op_type == "Attention"
        or (n.op_type == "MatMul" and "/output/dense" in n.name and "/attention/" not in n.name)
    ]
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "consider pre-processing"
    quantize_dynamic(
        str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
        nodes_to_exclude=keep, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )  # fmt: skip
