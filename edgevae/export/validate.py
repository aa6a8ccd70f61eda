"""Parity of an exported graph against PyTorch, through ONNX Runtime, over every mask-pattern class.

Mask-pattern classes (DESIGN §6), de-duplicated by value (with two modalities "only cam0" is
"missing audio")::

    all_present        every modality present
    missing_<m>        each single modality missing (M > 1)
    only_<m>           only one modality present   (M > 2)

Inputs are seeded random tensors in the normalised input space (video uniform in [0, 1], the
standardised kinds standard normal), zeros where a modality is absent, as the runtime feeds them.
The decode graph gets random and all-zero latents. A dynamic-batch export is also run at batch 1
to prove the batch axis really is dynamic. Shapes are compared first, then values, with the rows
of :mod:`edgevae.export.tolerances`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevae.errors import ParityError
from edgevae.export.tolerances import tolerance
from edgevae.modalities import ModalityKind, ModalitySet
from edgevae.parity import ParityReport, Tolerance, compare
from edgevae.runtime.base import Runner, TensorInfo

F32 = np.dtype("float32")


def mask_patterns(names: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """The mask-pattern classes for modalities ``names``: ``[(class name, mask (M,))]``."""
    m = len(names)
    candidates: list[tuple[str, np.ndarray]] = [("all_present", np.ones(m, np.float32))]
    if m > 1:
        for i, n in enumerate(names):
            v = np.ones(m, np.float32)
            v[i] = 0.0
            candidates.append((f"missing_{n}", v))
        for i, n in enumerate(names):
            v = np.zeros(m, np.float32)
            v[i] = 1.0
            candidates.append((f"only_{n}", v))
    seen: set[bytes] = set()
    out = []
    for name, v in candidates:
        if v.tobytes() not in seen:
            seen.add(v.tobytes())
            out.append((name, v))
    return out


def random_inputs(
    modalities: ModalitySet, mask: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Normalised-space inputs for ``mask`` (B, M): zeros where a modality is absent."""
    feed: dict[str, np.ndarray] = {}
    for i, spec in enumerate(modalities):
        shape = (len(mask), *spec.shape)
        if spec.kind is ModalityKind.video:
            x = rng.uniform(0.0, 1.0, shape)
        else:
            x = rng.standard_normal(shape)
        present = mask[:, i].reshape((-1,) + (1,) * len(spec.shape))
        feed[spec.name] = (x * present).astype(np.float32)
    feed["mask"] = np.ascontiguousarray(mask, dtype=np.float32)
    return feed


def graph_io(
    graph: str, modalities: ModalitySet, latent_dim: int, batch: str | int = "batch"
) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Input and output specs of ``analyze``/``encode``/``decode`` (DESIGN §6 contract names)."""
    m = len(modalities)
    d = latent_dim
    data_in = [TensorInfo(s.name, (batch, *s.shape), F32) for s in modalities]
    data_in.append(TensorInfo("mask", (batch, m), F32))
    recons = [TensorInfo(f"recon_{s.name}", (batch, *s.shape), F32) for s in modalities]
    z = [TensorInfo("z_mu", (batch, d), F32), TensorInfo("z_logvar", (batch, d), F32)]
    if graph == "analyze":
        scores = [
            TensorInfo("score", (batch,), F32),
            TensorInfo("score_parts", (batch, m + 2), F32),
        ]
        return data_in, [*z, *recons, *scores]
    if graph == "encode":
        experts = [
            TensorInfo("expert_mu", (batch, m, d), F32),
            TensorInfo("expert_logvar", (batch, m, d), F32),
        ]
        return data_in, [*z, *experts]
    if graph == "decode":
        return [TensorInfo("z", (batch, d), F32)], recons
    raise ValueError(f"unknown graph {graph!r}")


def parity_cases(
    graph: str,
    modalities: ModalitySet,
    latent_dim: int,
    *,
    batch: str | int,
    rows: int,
    seed: int,
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``[(case name, feed)]`` covering every mask-pattern class (or latents for ``decode``).

    A fixed ``batch`` makes every feed exactly that many rows; ``"dynamic"`` uses ``rows`` rows per
    case plus one batch-1 case.
    """
    rng = np.random.default_rng(seed)
    n = batch if isinstance(batch, int) else rows
    cases: list[tuple[str, dict[str, np.ndarray]]] = []
    if graph == "decode":
        cases.append(("z_random", {"z": rng.standard_normal((n, latent_dim)).astype(np.float32)}))
        cases.append(("z_zero_prior_mean", {"z": np.zeros((n, latent_dim), np.float32)}))
        if not isinstance(batch, int):
            cases.append(
                ("z_random_batch1", {"z": rng.standard_normal((1, latent_dim)).astype(F32)})
            )
        return cases
    for name, pattern in mask_patterns(modalities.names):
        mask = np.repeat(pattern[None], n, axis=0)
        cases.append((name, random_inputs(modalities, mask, rng)))
    if not isinstance(batch, int):
        ones = np.ones((1, len(modalities)), np.float32)
        cases.append(("all_present_batch1", random_inputs(modalities, ones, rng)))
    return cases


def check_parity(
    graph: str,
    reference: Runner,
    target: Runner,
    cases: Sequence[tuple[str, dict[str, np.ndarray]]],
    *,
    reference_name: str = "torch",
    target_name: str = "ort",
    precision: str = "fp32",
) -> ParityReport:
    """Run every case through both runners and compare each output (shapes first, then values).

    Returns:
        The combined :class:`~edgevae.parity.ParityReport` (check ``.passed``).
    """
    report = ParityReport(f"{graph}: {reference_name} -> {target_name} {precision}")
    names = list(reference.outputs)
    missing = [n for n in names if n not in target.outputs]
    extra = [n for n in target.outputs if n not in names]
    if missing or extra:
        raise ParityError(
            f"{graph}: the {target_name} artifact's outputs {list(target.outputs)} differ from the "
            f"contract {names} (missing {missing}, unexpected {extra}); re-export it."
        )

    def tol(name: str) -> Tolerance:
        return tolerance(reference_name, target_name, precision, name)

    for case, feed in cases:
        ref = reference.run(feed)
        out = target.run(feed)
        report.extend(compare(ref, out, tol, case=case, names=names))
    return report


def require_parity(report: ParityReport, artifact: str) -> None:
    """Raise ParityError (one line: the first failing output, its statistics) unless it passed."""
    if report.passed:
        return
    raise ParityError(
        f"parity check failed for {artifact} ({report.label}): {report.first_failure()}; "
        "nothing was written. The exporter or ONNX Runtime computes this output differently: "
        "try another --opset, and report it with the run's model.json if it persists."
    )
