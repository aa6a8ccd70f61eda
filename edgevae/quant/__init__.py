"""Quantization of an ONNX export: FP16 and INT8 (Q/DQ) artifacts, each behind an accuracy gate.

``quantize(export_dir, QuantConfig(...), data_dir)`` writes ``<graph>.fp16.onnx``,
``<graph>.int8.trt.onnx`` and/or ``<graph>.int8.cpu.onnx`` next to the FP32 graphs, with
manifests and ``quantize.<precision>.gate.json`` (DESIGN §6). Modules:

* :mod:`~edgevae.quant.config`: ``QuantConfig`` and the artifact names (contract);
* :mod:`~edgevae.quant.calibration`: recipes, stratified calibration samples, the range cache;
* :mod:`~edgevae.quant.graph`: the FP32 island, first/last layers, quantized-model detection;
* :mod:`~edgevae.quant.fp16` / :mod:`~edgevae.quant.int8`: the two paths;
* :mod:`~edgevae.quant.gate`: the accuracy gate and the per-layer report;
* :mod:`~edgevae.quant.report`: tables (terminal, Markdown) of a result;
* :mod:`~edgevae.quant.run`: the stage function.

Importing this package imports neither torch, onnx nor onnxruntime.
"""

from __future__ import annotations

from edgevae.quant.config import QuantConfig, artifact_name
from edgevae.quant.run import QuantResult, quantize

__all__ = ["QuantConfig", "QuantResult", "artifact_name", "quantize"]
