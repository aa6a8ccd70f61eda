"""INT8 Q/DQ artifacts: one for TensorRT, one for the ONNX Runtime CPU (they never coincide).

Both start from the same pre-processed FP32 graph (``quant_pre_process``: ONNX shape inference and
ORT's basic, standard-op optimisations) and the same activation ranges (ORT calibrator, cached as
JSON by :mod:`edgevae.quant.calibration`). No TensorRT calibrator or calibration table is used
anywhere: the scales live in the Q/DQ ONNX.

==================  ===============================  ======================================
                    ``*.int8.trt.onnx``              ``*.int8.cpu.onnx``
==================  ===============================  ======================================
activations         S8, symmetric (zero point 0)     U8 asymmetric on x86, S8 symmetric ARM
weights             S8 symmetric, per channel        S8 symmetric, per channel
bias                FP32 (not quantized)             int32 (ORT default, fused QLinearConv)
outputs of layers   not quantized (Q/DQ on inputs)   quantized (so ORT fuses DQ-op-Q)
op types            Conv, ConvTranspose, Gemm,       ``QuantConfig.cpu_op_types``
                    MatMul
excluded            FP32 island, first and last      FP32 island, first/last unless
                    layers, convs with < 16          ``cpu_first_last``, ``--exclude``
                    channels, ``--exclude``
==================  ===============================  ======================================

The TensorRT settings are ModelOpt's TRT-guided ``extra_options`` for ORT (``configure_ort``,
``reference/quantization.md`` §2). S8S8 Q/DQ is not fused by ORT on x86 (every Conv runs FP32
between Q/DQ), which is why the CPU artifact is separate.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.errors import QuantizationError
from edgevae.quant.graph import (
    WEIGHT_OPS,
    first_and_last_layers,
    fp32_island,
    name_unnamed_nodes,
)

_METHOD = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
_MIN_TRT_CHANNELS = 16  # ModelOpt: TensorRT has no fast INT8 conv kernels below this


@contextlib.contextmanager
def quiet_ort_logging() -> Iterator[None]:
    """Silence the quantizer's root-logger warnings (pre-processing hints) while inside."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def cpu_arch(choice: str = "auto", machine: str | None = None) -> str:
    """``x86`` or ``arm``: ``choice`` unless ``auto``, else this machine's architecture."""
    if choice != "auto":
        return choice
    machine = (machine or platform.machine()).lower()
    return "arm" if machine.startswith(("arm", "aarch")) else "x86"


def has_vnni(cpuinfo: str | None = None) -> bool:
    """Whether this x86 CPU has VNNI (``avx512_vnni`` or ``avx_vnni`` in /proc/cpuinfo)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return bool(re.search(r"\b(avx512_vnni|avx_vnni)\b", cpuinfo))


@dataclass
class Int8Plan:
    """What one INT8 artifact quantizes and how (recorded in its manifest).

    Args:
        flavor: ``trt`` or ``cpu``.
        op_types: op types to quantize.
        excluded: node name -> why it stays FP32.
        activation_type / weight_type: ``int8`` or ``uint8``.
        activation_symmetric: zero point 0 for activations.
        per_channel: per-output-channel weight scales.
        reduce_range: 7-bit weights (x86 without VNNI).
        quantize_outputs: Q/DQ on layer outputs too (CPU fusion) or inputs only (TensorRT).
        arch: ``x86``/``arm`` for the CPU artifact, ``None`` for TensorRT.
    """

    flavor: str
    op_types: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)
    activation_type: str = "int8"
    weight_type: str = "int8"
    activation_symmetric: bool = True
    per_channel: bool = True
    reduce_range: bool = False
    quantize_outputs: bool = False
    arch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor,
            "scheme": f"{'U8' if self.activation_type == 'uint8' else 'S8'}S8",
            "op_types": list(self.op_types),
            "activation_type": self.activation_type,
            "weight_type": self.weight_type,
            "activation_symmetric": self.activation_symmetric,
            "weight_symmetric": True,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "bias_quantized": self.flavor == "cpu",
            "outputs_quantized": self.quantize_outputs,
            "arch": self.arch,
            "excluded": dict(sorted(self.excluded.items())),
        }

    def extra_options(self, all_op_types: Sequence[str]) -> dict[str, Any]:
        """``quantize_static`` ``extra_options`` for this plan."""
        if self.flavor == "trt":
            return {
                "QuantizeBias": False,
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "OpTypesToExcludeOutputQuantization": sorted(set(all_op_types)),
                "AddQDQPairToWeight": True,
                "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
                "DedicatedQDQPair": False,
                "ForceQuantizeNoInputCheck": True,
                "QDQDisableWeightAdjustForInt32Bias": True,
            }
        return {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": True,
            "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
        }


# -- pre-processing and calibration ----------------------------------------------------------------
def preprocess(data: bytes) -> bytes:
    """``quant_pre_process`` on serialized FP32 ONNX (shape inference + basic optimisations).

    Symbolic shape inference is skipped: it cannot finish on the exported graphs' dynamic batch
    (measured with onnxruntime 1.32), and ONNX shape inference covers every op they use.

    Raises:
        QuantizationError: pre-processing failed.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgevae-quant-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "pre.onnx"
        src.write_bytes(data)
        try:
            with quiet_ort_logging():
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        except Exception as exc:  # ORT raises plain Exceptions
            raise QuantizationError(
                f"quantization pre-processing failed: {_first_line(exc)}; report it with the "
                "export's manifest."
            ) from None
        model = onnx.load(str(dst))
    name_unnamed_nodes(model)
    return model.SerializeToString()


def calibrate(pre: bytes, batches: Sequence[Mapping[str, np.ndarray]], method: str) -> Any:
    """Activation ranges of every float tensor of ``pre`` over ``batches`` (ORT calibrator).

    Returns:
        ORT ``TensorsData``.

    Raises:
        CalibrationError: ONNX Runtime rejected the calibration feeds.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from edgevae.errors import CalibrationError

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory(prefix="edgevae-calib-") as tmp:
        path = Path(tmp) / "pre.onnx"
        path.write_bytes(pre)
        try:
            with quiet_ort_logging():
                calibrator = create_calibrator(
                    path,
                    None,  # every float tensor: one cache serves both artifacts
                    augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                    calibrate_method=getattr(CalibrationMethod, _METHOD[method]),
                )
                calibrator.collect_data(_Reader())
                ranges = calibrator.compute_data()
        except Exception as exc:  # onnxruntime's pybind errors (InvalidArgument, Fail)
            raise CalibrationError(
                f"calibration failed: {_first_line(exc)}; the calibration data does not fit the "
                "model (check --data)."
            ) from None
    return ranges


# -- planning --------------------------------------------------------------------------------------
def _small_channel_convs(model: Any) -> set[str]:
    """Convs TensorRT has no fast INT8 kernel for (ModelOpt's rule, simplified): fewer than 16
    input or output channels, unless grouped 1, both channel counts a multiple of 8 and the kernel
    square."""
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    small = set()
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or node.input[1] not in weights:
            continue
        shape = weights[node.input[1]]
        oc, ic = (shape[0], shape[1]) if node.op_type == "Conv" else (shape[1], shape[0])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        kernel = shape[2:]
        if min(oc, ic) >= _MIN_TRT_CHANNELS:
            continue
        aligned = group == 1 and oc % 8 == 0 and ic % 8 == 0 and len(set(kernel)) <= 1
        if not aligned:
            small.add(node.name)
    return small


def plan(model: Any, flavor: str, *, exclude: Sequence[str], config: Any) -> Int8Plan:
    """The :class:`Int8Plan` of ``flavor`` for the pre-processed ``model``.

    Args:
        model: pre-processed ``onnx.ModelProto``.
        flavor: ``trt`` or ``cpu``.
        exclude: user regexes (``--exclude``) matched against node names.
        config: the :class:`~edgevae.quant.config.QuantConfig`.
    """
    from edgevae.quant.config import TRT_OP_TYPES

    island = fp32_island(model)
    first, last = first_and_last_layers(model, island)
    excluded: dict[str, str] = {}
    for name in sorted(island):
        excluded[name] = "fp32 island (fusion/scoring)"
    if flavor == "trt":
        p = Int8Plan("trt", TRT_OP_TYPES)
        for name in sorted(_small_channel_convs(model)):
            excluded.setdefault(name, "fewer than 16 channels (no fast TensorRT INT8 kernel)")
        skip_first_last = True
    else:
        arch = cpu_arch(config.cpu_arch)
        u8 = arch == "x86"
        p = Int8Plan(
            "cpu",
            tuple(config.cpu_op_types),
            activation_type="uint8" if u8 else "int8",
            activation_symmetric=not u8,
            reduce_range=u8 and not has_vnni() and config.cpu_arch == "auto",
            quantize_outputs=True,
            arch=arch,
        )
        skip_first_last = not config.cpu_first_last
    if skip_first_last:
        for name in sorted(first):
            excluded.setdefault(name, "first layer")
        for name in sorted(last):
            excluded.setdefault(name, "last layer")
    names = [n.name for n in model.graph.node]
    for pattern in exclude:  # a pattern matching nothing here may match another graph
        for name in (n for n in names if re.search(pattern, n)):
            excluded.setdefault(name, f"--exclude {pattern}")
    p.excluded = excluded
    return p


# -- quantization ----------------------------------------------------------------------------------
def quantize_ort(pre: bytes, p: Int8Plan, ranges_payload: Mapping[str, Any], method: str) -> bytes:
    """ONNX Runtime ``quantize_static`` (QDQ) of ``pre`` with the cached ranges.

    Raises:
        QuantizationError: the quantizer failed.
    """
    import json

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    model = onnx.load_from_string(pre)
    all_ops = [n.op_type for n in model.graph.node]
    with tempfile.TemporaryDirectory(prefix="edgevae-quant-") as tmp:
        src, dst, cache = (Path(tmp) / n for n in ("pre.onnx", "q.onnx", "ranges.json"))
        src.write_bytes(pre)
        cache.write_text(json.dumps(ranges_payload))
        try:
            with quiet_ort_logging():
                quantize_static(
                    str(src),
                    str(dst),
                    None,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(p.op_types),
                    per_channel=p.per_channel,
                    reduce_range=p.reduce_range,
                    activation_type=qtype[p.activation_type],
                    weight_type=qtype[p.weight_type],
                    nodes_to_exclude=sorted(p.excluded),
                    calibrate_method=getattr(CalibrationMethod, _METHOD[method]),
                    extra_options=p.extra_options(all_ops),
                    calibration_cache_path=str(cache),
                )
        except Exception as exc:  # the quantizer raises ValueError/RuntimeError/KeyError
            raise QuantizationError(
                f"ONNX Runtime's quantizer failed for the {p.flavor} artifact: "
                f"{_first_line(exc)}; try --method minmax or --exclude the node it names."
            ) from None
        return dst.read_bytes()


def quantize_modelopt(
    pre: bytes, p: Int8Plan, feeds: Mapping[str, np.ndarray], method: str
) -> bytes:
    """NVIDIA ModelOpt's TensorRT-guided INT8 Q/DQ (optional backend, TensorRT artifact only).

    Raises:
        MissingDependencyError: ``nvidia-modelopt[onnx]`` is not installed.
        QuantizationError: ModelOpt failed.
    """
    from edgevae._util.lazy import require

    mq = require("modelopt.onnx.quantization")
    with tempfile.TemporaryDirectory(prefix="edgevae-modelopt-") as tmp:
        src, dst = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        src.write_bytes(pre)
        try:
            mq.quantize(
                onnx_path=str(src),
                quantize_mode="int8",
                calibration_data={k: np.asarray(v) for k, v in feeds.items()},
                calibration_method="max" if method == "minmax" else "entropy",
                calibration_eps=["cpu"],
                nodes_to_exclude=[f"^{re.escape(n)}$" for n in sorted(p.excluded)],
                high_precision_dtype="fp32",
                output_path=str(dst),
            )
        except Exception as exc:  # ModelOpt raises many types
            raise QuantizationError(
                f"ModelOpt quantization failed: {_first_line(exc)}; retry with --backend ort."
            ) from None
        return dst.read_bytes()


# -- verification ----------------------------------------------------------------------------------
def inspect_qdq(model: Any) -> dict[str, Any]:
    """What a Q/DQ model quantizes: per weight-op node, whether its activation and weight inputs
    come from DequantizeLinear, the weight scale shape, the bias source, whether its output is
    quantized; plus every zero point's dtype and values."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def array(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    layers = {}
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        srcs = [producers.get(i) for i in node.input]
        dq = [s is not None and s.op_type == "DequantizeLinear" for s in srcs]
        scale = None
        if len(dq) > 1 and dq[1]:
            s = array(srcs[1].input[1])
            scale = list(s.shape) if s is not None else None
        bias_src = None
        if len(node.input) > 2 and node.input[2]:
            bias_src = "initializer" if node.input[2] in inits else srcs[2].op_type
        out_q = any(c.op_type == "QuantizeLinear" for c in consumers.get(node.output[0], []))
        layers[node.name] = {
            "op_type": node.op_type,
            "activation_dq": dq[0],
            "weight_dq": len(dq) > 1 and dq[1],
            "weight_scale_shape": scale,
            "bias": bias_src,
            "output_quantized": out_q,
        }
    zero_points = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            z = array(node.input[2])
            if z is not None:
                zero_points.append((node.name, str(z.dtype), z.ravel().tolist()))
    outputs = {o.name for o in graph.output}
    quantized_outputs = [
        o for o in outputs if producers.get(o) is not None and producers[o].op_type in
        ("QuantizeLinear", "DequantizeLinear")
    ]  # fmt: skip
    return {"layers": layers, "zero_points": zero_points, "quantized_outputs": quantized_outputs}


def verify(data: bytes, p: Int8Plan) -> dict[str, Any]:
    """Check a quantized artifact against its plan and summarise it (for the manifest).

    Raises:
        QuantizationError: nothing was quantized (an FP32 model in disguise), or the TensorRT
            artifact breaks its contract (non-zero zero points, quantized bias or outputs,
            Q/DQ on an excluded node).
    """
    import onnx

    info = inspect_qdq(onnx.load_from_string(data))
    layers = info["layers"]
    quantized = sorted(n for n, v in layers.items() if v["weight_dq"])
    candidates = [n for n, v in layers.items() if v["op_type"] in p.op_types]
    if not quantized:
        raise QuantizationError(
            f"no layer was quantized in the {p.flavor} artifact ({len(candidates)} candidate "
            f"{'/'.join(p.op_types)} layers, all excluded or unsupported): it would be FP32 in "
            "disguise; relax --exclude, or use --precision fp16."
        )
    leaked = [n for n in quantized if n in p.excluded]
    problems = [f"excluded node '{leaked[0]}' has Q/DQ"] if leaked else []
    if p.flavor == "trt":
        nonzero = [z for z in info["zero_points"] if any(v != 0 for v in z[2]) or z[1] != "int8"]
        if nonzero:
            problems.append(f"zero point of '{nonzero[0][0]}' is {nonzero[0][1]} {nonzero[0][2]}")
        biased = [n for n in quantized if layers[n]["bias"] not in (None, "initializer")]
        if biased:
            problems.append(f"bias of '{biased[0]}' is quantized")
        outs = [n for n in quantized if layers[n]["output_quantized"]]
        if outs:
            problems.append(f"output of '{outs[0]}' is quantized")
        if info["quantized_outputs"]:
            problems.append(f"graph output '{info['quantized_outputs'][0]}' is produced by Q/DQ")
    if problems:
        raise QuantizationError(
            f"the {p.flavor} INT8 artifact breaks its contract: {problems[0]}; report it with "
            "the export's manifest."
        )
    return {
        "quantized_nodes": quantized,
        "quantized_count": len(quantized),
        "fp32_weight_layers": sorted(n for n in layers if n not in quantized),
        "weight_scales": {n: layers[n]["weight_scale_shape"] for n in quantized},
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
