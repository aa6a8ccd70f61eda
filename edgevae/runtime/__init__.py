"""Runners: one small interface to run any artifact (PyTorch, ONNX Runtime, TensorRT).

Parity checks, calibration, the accuracy gate, benchmarks and the analyzer all run models through
:class:`edgevae.runtime.base.Runner`.
"""
