"""Compare a model's outputs with a reference's: shapes first, then values (NumPy only).

Per output: max-abs and mean-abs error (with the worst element's index), cosine similarity and
SQNR, and a verdict against a :class:`Tolerance` (Polygraphy-style semantics, see
``reference/quantization.md`` §6)::

    allclose      |target - ref| <= atol + rtol * |ref|   element-wise (when atol/rtol are set)
    cosine        <ref, target> / (|ref| |target|)        >= min_cosine (when set)
    SQNR (dB)     20 * log10(|ref| / |ref - target|)      >= min_sqnr_db (when set)

Edge cases: two all-zero tensors have cosine 1 and SQNR +inf; a NaN or Inf in the target (or the
reference) always fails. The report says the smallest ``atol`` that would have passed at the given
``rtol`` ("minimum required tolerance"), so a failing row tells you how far off it is.

Example:
    >>> import numpy as np
    >>> rep = compare({"y": np.ones(3)}, {"y": np.ones(3) + 1e-6}, Tolerance(atol=1e-4, rtol=0.0))
    >>> rep.passed, rep.outputs[0].name
    (True, 'y')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """What "close enough" means for one output; ``None`` fields are not checked.

    Args:
        atol: absolute tolerance of the element-wise check (needs ``rtol`` too, may be 0).
        rtol: relative tolerance of the element-wise check.
        min_cosine: lowest acceptable cosine similarity.
        min_sqnr_db: lowest acceptable signal-to-quantization-noise ratio in dB.
    """

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_sqnr_db: float | None = None

    def __post_init__(self) -> None:
        if (self.atol is None) != (self.rtol is None):
            raise ValueError("Tolerance needs both atol and rtol for the element-wise check.")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"Tolerance {name} must be >= 0, got {value}.")

    def describe(self) -> str:
        parts = []
        if self.atol is not None:
            parts.append(f"atol {self.atol:g}, rtol {self.rtol:g}")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_sqnr_db is not None:
            parts.append(f"SQNR >= {self.min_sqnr_db:g} dB")
        return "; ".join(parts) or "no check"

    def to_dict(self) -> dict[str, float | None]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "min_cosine": self.min_cosine,
            "min_sqnr_db": self.min_sqnr_db,
        }


@dataclass(frozen=True)
class OutputComparison:
    """One output of one case (e.g. one mask-pattern class) compared with its reference."""

    name: str
    case: str
    ref_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    max_abs: float | None = None
    mean_abs: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    worst_index: tuple[int, ...] | None = None
    required_atol: float | None = None
    tolerance: Tolerance | None = None
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def line(self) -> str:
        """One line: name, case, verdict, the statistics and what failed."""
        verdict = "PASSED" if self.passed else "FAILED"
        where = f"{self.name} [{self.case}]" if self.case else self.name
        if self.max_abs is None:
            return f"{verdict} | {where} | {'; '.join(self.failures)}"
        stats = (
            f"max-abs {self.max_abs:.3g} at {self.worst_index}, mean-abs {self.mean_abs:.3g}, "
            f"cosine {_fmt(self.cosine, '.6f')}, SQNR {_fmt(self.sqnr_db, '.1f')} dB"
        )
        tail = f" | {'; '.join(self.failures)}" if self.failures else ""
        return f"{verdict} | {where} | {stats}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "case": self.case,
            "ref_shape": list(self.ref_shape),
            "target_shape": list(self.target_shape),
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "cosine": self.cosine,
            "sqnr_db": json_float(self.sqnr_db),
            "worst_index": list(self.worst_index) if self.worst_index is not None else None,
            "required_atol": self.required_atol,
            "tolerance": self.tolerance.to_dict() if self.tolerance else None,
            "passed": self.passed,
            "failures": list(self.failures),
        }


@dataclass
class ParityReport:
    """All comparisons of one check (several cases x outputs)."""

    label: str
    outputs: list[OutputComparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def failures(self) -> list[OutputComparison]:
        return [o for o in self.outputs if not o.passed]

    def extend(self, other: ParityReport) -> None:
        self.outputs.extend(other.outputs)

    def worst_per_output(self) -> dict[str, OutputComparison]:
        """Per output name, the case with the lowest SQNR (failures first)."""
        worst: dict[str, OutputComparison] = {}
        for o in self.outputs:
            cur = worst.get(o.name)
            if cur is None or _badness(o) > _badness(cur):
                worst[o.name] = o
        return worst

    def first_failure(self) -> str:
        """One line naming the first failing output (for an error message); '' if none."""
        bad = self.failures
        if not bad:
            return ""
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        return bad[0].line() + more

    def summary(self) -> dict[str, Any]:
        """Worst cases over every comparison, for a one-line report.

        Returns:
            ``comparisons``; ``max_abs``, ``min_cosine`` and ``min_sqnr_db`` as
            ``{"value", "output", "case"}`` (None when nothing had statistics); and
            ``tolerance_used``: the largest ``required_atol / atol`` (1.0 = at the limit of the
            element-wise check; None without one).
        """
        stats = [o for o in self.outputs if o.max_abs is not None]

        def extreme(key: str, pick: Callable[..., Any]) -> dict[str, Any] | None:
            if not stats:
                return None
            o = pick(stats, key=lambda c: getattr(c, key))
            return {"value": json_float(getattr(o, key)), "output": o.name, "case": o.case}

        used = []
        for o in stats:
            atol = o.tolerance.atol if o.tolerance is not None else None
            if atol is None or o.required_atol is None:
                continue
            if atol > 0:
                used.append(o.required_atol / atol)
            else:  # atol 0: exact match needed
                used.append(0.0 if o.required_atol == 0 else math.inf)
        return {
            "comparisons": len(self.outputs),
            "max_abs": extreme("max_abs", max),
            "min_cosine": extreme("cosine", min),
            "min_sqnr_db": extreme("sqnr_db", min),
            "tolerance_used": json_float(max(used)) if used else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "passed": self.passed,
            "cases": sorted({o.case for o in self.outputs}),
            "summary": self.summary(),
            "worst": {k: v.to_dict() for k, v in self.worst_per_output().items()},
            "failures": [o.to_dict() for o in self.failures],
        }


def _badness(o: OutputComparison) -> tuple[int, float]:
    sqnr = o.sqnr_db if o.sqnr_db is not None else -math.inf
    return (0 if o.passed else 1, -sqnr)


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def json_float(value: float | None) -> float | str | None:
    """A float for JSON: +-inf as the strings "inf"/"-inf" (JSON has no infinities)."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def statistics(reference: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """Error statistics of ``target`` against ``reference`` (same shape; computed in float64).

    Returns:
        ``max_abs``, ``mean_abs``, ``worst_index``, ``cosine`` and ``sqnr_db``.
    """
    ref = np.asarray(reference, np.float64)
    tgt = np.asarray(target, np.float64)
    diff = np.abs(tgt - ref)
    if diff.size == 0:
        return {
            "max_abs": 0.0,
            "mean_abs": 0.0,
            "worst_index": (),
            "cosine": 1.0,
            "sqnr_db": math.inf,
        }
    worst = np.unravel_index(int(np.nanargmax(diff)) if np.isfinite(diff).any() else 0, diff.shape)
    ref_norm = float(np.linalg.norm(ref.ravel()))
    tgt_norm = float(np.linalg.norm(tgt.ravel()))
    err_norm = float(np.linalg.norm((tgt - ref).ravel()))
    if ref_norm == 0.0 and tgt_norm == 0.0:
        cosine = 1.0
    elif ref_norm == 0.0 or tgt_norm == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(ref.ravel(), tgt.ravel()) / (ref_norm * tgt_norm))
    if err_norm == 0.0:
        sqnr = math.inf
    elif ref_norm == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 20.0 * math.log10(ref_norm / err_norm)
    return {
        "max_abs": float(np.max(diff)),
        "mean_abs": float(np.mean(diff)),
        "worst_index": tuple(int(i) for i in worst),
        "cosine": cosine,
        "sqnr_db": sqnr,
    }


def compare_output(
    name: str,
    reference: np.ndarray,
    target: np.ndarray,
    tolerance: Tolerance,
    case: str = "",
) -> OutputComparison:
    """Compare one output: shape first, then finiteness, then the tolerance's checks."""
    ref, tgt = np.asarray(reference), np.asarray(target)
    if ref.shape != tgt.shape:
        return OutputComparison(
            name, case, ref.shape, tgt.shape, tolerance=tolerance,
            failures=(f"shape {tgt.shape} != reference shape {ref.shape}",),
        )  # fmt: skip
    failures: list[str] = []
    if not np.isfinite(ref).all():
        failures.append("NaN/Inf in the reference")
    if not np.isfinite(tgt).all():
        failures.append(f"{int((~np.isfinite(tgt)).sum())} NaN/Inf value(s)")
    if failures:
        return OutputComparison(
            name, case, ref.shape, tgt.shape, tolerance=tolerance, failures=tuple(failures)
        )
    s = statistics(ref, tgt)
    required = None
    if tolerance.atol is not None and tolerance.rtol is not None:
        diff = np.abs(tgt.astype(np.float64) - ref.astype(np.float64))
        excess = diff - tolerance.rtol * np.abs(ref.astype(np.float64))
        required = float(max(0.0, excess.max())) if excess.size else 0.0
        if required > tolerance.atol:
            failures.append(
                f"allclose failed (atol {tolerance.atol:g}, rtol {tolerance.rtol:g}; "
                f"needs atol >= {required:.3g})"
            )
    if tolerance.min_cosine is not None and s["cosine"] < tolerance.min_cosine:
        failures.append(f"cosine {s['cosine']:.6f} < {tolerance.min_cosine:g}")
    if tolerance.min_sqnr_db is not None and s["sqnr_db"] < tolerance.min_sqnr_db:
        failures.append(f"SQNR {s['sqnr_db']:.1f} dB < {tolerance.min_sqnr_db:g} dB")
    return OutputComparison(
        name, case, ref.shape, tgt.shape, s["max_abs"], s["mean_abs"], s["cosine"], s["sqnr_db"],
        s["worst_index"], required, tolerance, tuple(failures),
    )  # fmt: skip


def compare(
    reference: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    tolerance: Tolerance | Callable[[str], Tolerance],
    *,
    case: str = "",
    label: str = "",
    names: Iterable[str] | None = None,
) -> ParityReport:
    """Compare every output of ``reference`` (or only ``names``) with ``target``.

    Args:
        reference: outputs by name (the trusted model).
        target: outputs by name (the model under test); a missing name fails.
        tolerance: one Tolerance for all outputs, or ``name -> Tolerance``.
        case: what inputs produced these outputs (e.g. a mask-pattern class).
        label: what is compared (e.g. ``"torch -> ort fp32"``).
        names: the outputs to compare (default: all of ``reference``).

    Returns:
        A :class:`ParityReport` with one comparison per output.
    """
    tol_for = tolerance if callable(tolerance) else (lambda _n: tolerance)
    report = ParityReport(label)
    for name in names if names is not None else reference:
        tol = tol_for(name)
        if name not in target:
            report.outputs.append(
                OutputComparison(
                    name,
                    case,
                    tuple(np.shape(reference[name])),
                    (),
                    tolerance=tol,
                    failures=("missing from the target's outputs",),
                )
            )
            continue
        report.outputs.append(compare_output(name, reference[name], target[name], tol, case))
    return report
