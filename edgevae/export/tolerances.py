"""THE tolerance table: how close an artifact must be to its reference (one place, style.md §5).

Rows are keyed ``(reference, target, precision, output)``; ``output`` ``"*"`` is the row for every
output without its own row. References: ``torch`` (the PyTorch FP32 model) and ``onnx-fp32`` (the
exported FP32 ONNX, the reference of every quantized artifact). Targets: ``ort`` (ONNX Runtime)
and ``trt`` (a TensorRT engine).

Starting points come from ``reference/quantization.md`` §6 and ``reference/style.md`` §5 and were
tightened or confirmed with measured data (ORT FP32 vs PyTorch on the nano model: max-abs about
1e-6 on every output, so 3e-4 leaves room for other CPUs' kernels).

The accuracy gate adds task metrics per precision (:data:`TASK_GATES`): the frame-AUROC drop and
the reconstruction-PSNR drop on held-out data, against the FP32 artifact on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevae.errors import ConfigError
from edgevae.parity import Tolerance

REFERENCES = ("torch", "onnx-fp32")
TARGETS = ("ort", "trt")
PRECISIONS = ("fp32", "fp16", "int8")
ANY_OUTPUT = "*"

_FP32_ORT = Tolerance(atol=3e-4, rtol=1e-3)
_FP32_TRT = Tolerance(atol=1e-3, rtol=1e-3)  # TF32 cleared; TF32 on would need its own row
_FP16 = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999)
_INT8 = Tolerance(min_cosine=0.99, min_sqnr_db=20.0)  # SQNR, not allclose, for INT8

TABLE: dict[tuple[str, str, str, str], Tolerance] = {
    # PyTorch FP32 -> exported FP32 (the export's parity check)
    ("torch", "ort", "fp32", ANY_OUTPUT): _FP32_ORT,
    ("torch", "ort", "fp32", "z_mu"): Tolerance(atol=1e-4, rtol=1e-3),
    ("torch", "trt", "fp32", ANY_OUTPUT): _FP32_TRT,
    # exported FP32 ONNX -> precision-specific artifacts (the accuracy gate's per-output rows).
    # FP16: scores are sums of standardised parts; the relative term carries them.
    ("onnx-fp32", "ort", "fp16", ANY_OUTPUT): _FP16,
    ("onnx-fp32", "trt", "fp16", ANY_OUTPUT): _FP16,
    ("torch", "trt", "fp16", ANY_OUTPUT): _FP16,
    ("onnx-fp32", "ort", "int8", ANY_OUTPUT): _INT8,
    ("onnx-fp32", "trt", "int8", ANY_OUTPUT): _INT8,
    ("torch", "ort", "int8", ANY_OUTPUT): _INT8,
    ("torch", "trt", "int8", ANY_OUTPUT): _INT8,
}


@dataclass(frozen=True)
class TaskGate:
    """Task-metric limits of the accuracy gate for one precision (drops vs the FP32 artifact).

    Args:
        max_auroc_drop: largest allowed frame-AUROC drop (FP32 AUROC - artifact AUROC).
        max_psnr_drop_db: largest allowed drop of the mean reconstruction PSNR of any modality.
    """

    max_auroc_drop: float
    max_psnr_drop_db: float


TASK_GATES: dict[str, TaskGate] = {
    "fp16": TaskGate(max_auroc_drop=0.001, max_psnr_drop_db=0.1),
    "int8": TaskGate(max_auroc_drop=0.005, max_psnr_drop_db=0.5),
}


def tolerance(reference: str, target: str, precision: str, output: str) -> Tolerance:
    """The row for ``(reference, target, precision, output)``, else its ``"*"`` row.

    Raises:
        ConfigError: no row for that reference/target/precision.
    """
    row = TABLE.get((reference, target, precision, output))
    if row is None:
        row = TABLE.get((reference, target, precision, ANY_OUTPUT))
    if row is None:
        raise ConfigError(
            f"no tolerance row for {reference} -> {target} {precision}; add one to "
            "edgevae/export/tolerances.py."
        )
    return row


def task_gate(precision: str) -> TaskGate:
    """Task-metric limits for ``fp16``/``int8``.

    Raises:
        ConfigError: a precision without a gate (fp32 is the reference).
    """
    if precision not in TASK_GATES:
        raise ConfigError(f"no accuracy gate for precision '{precision}' (fp16 and int8 have one).")
    return TASK_GATES[precision]
