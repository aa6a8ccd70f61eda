"""ONNX export of a training run: graphs with contract names, checked for parity against PyTorch.

``export(run_dir, out_dir, ExportConfig())`` writes ``analyze.onnx``, ``encode.onnx`` and
``decode.onnx`` with sidecar manifests (DESIGN §6). Importing this package does not import torch,
onnx or onnxruntime.
"""

from __future__ import annotations

from edgevae.export.config import GRAPHS, OPSET, ExportConfig
from edgevae.export.onnx import export

__all__ = ["GRAPHS", "OPSET", "ExportConfig", "export"]
