"""The accuracy gate: every quantized artifact against the FP32 export, on held-out data.

Data: the ``test`` split of the dataset (labelled, never used for training or calibration),
normalised with the export's statistics, every clip with its own mask. Both models run on ONNX
Runtime's CPU provider (a TensorRT artifact is checked as fake-quantized Q/DQ here; the engine is
checked against FP32 again where it is built).

Checks, per artifact:

* **per output**: max-abs/mean-abs error, cosine similarity and SQNR against the FP32 outputs,
  accumulated over the whole split, judged with the ``onnx-fp32 -> ort <precision>`` rows of
  :mod:`edgevae.export.tolerances` (INT8: SQNR and cosine, not allclose);
* **task metrics** (:data:`edgevae.export.tolerances.TASK_GATES`): the frame-level AUROC drop of
  ``score`` (analyze), and the drop of the mean reconstruction PSNR of each camera (analyze and
  decode; decode is fed the FP32 latent of the same clips);
* **per layer** (INT8): SQNR of every weight layer's output against FP32 on a slice of the data,
  and how many dB each layer loses relative to its input, ranked, with a suggested ``--exclude``.

Verdicts: ``passed`` (✅), ``failed`` (❎ built but failed the gate), ``error`` (❌ not built).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevae.errors import DatasetError
from edgevae.export.tolerances import task_gate, tolerance
from edgevae.modalities import ModalityKind, ModalitySet
from edgevae.parity import OutputComparison, Tolerance, json_float
from edgevae.quant.graph import WEIGHT_OPS

BATCH = 64
LAYER_ROWS = 64  # clips used for the per-layer report
SYMBOL = {"passed": "✅", "failed": "❎", "error": "❌"}


@dataclass
class GateData:
    """Held-out clips, raw (normalised per batch to bound memory), with labels and video ids."""

    raw: dict[str, np.ndarray]
    modalities: ModalitySet
    normalizer: Any
    frame_labels: np.ndarray
    video_id: np.ndarray
    summary: dict[str, Any]

    def __len__(self) -> int:
        return len(self.video_id)

    def batches(
        self, size: int = BATCH, rows: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Normalised feeds of the modality graphs (modalities + ``mask``), ``size`` rows each."""
        n = len(self) if rows is None else min(rows, len(self))
        for s in range(0, n, size):
            raw = {k: v[s : min(s + size, n)] for k, v in self.raw.items()}
            yield self.normalizer.batch(raw)


def load_gate_data(
    data_dir: Any, modalities: ModalitySet, normalization: Mapping[str, Any], max_clips: int | None
) -> GateData:
    """The test split of ``data_dir`` for the gate (at most ``max_clips``, evenly spaced).

    Raises:
        DatasetError: no test split, or no anomalous frames in it (AUROC would be undefined).
        ShapeError: modalities that do not match the model.
    """
    from pathlib import Path

    from edgevae.data.format import open_dataset
    from edgevae.data.transforms import Normalizer
    from edgevae.quant.calibration import check_data_modalities

    data_dir = Path(data_dir)
    reader = open_dataset(data_dir, verify="size")
    check_data_modalities(modalities, reader.modalities, data_dir)
    if "test" not in reader.splits or len(reader.split("test")) < 2:
        raise DatasetError(
            f"dataset '{data_dir}' has no test split (it has: {', '.join(reader.splits)}); the "
            "accuracy gate needs held-out labelled clips: pass --data with a test split (e.g. "
            "from `edgevae data synth`)."
        )
    split = reader.split("test")
    n = len(split)
    if max_clips is not None and max_clips < n:
        idx = np.unique(np.linspace(0, n - 1, max_clips).round().astype(np.int64))
    else:
        idx = np.arange(n)
    raw = split.read(idx, [*modalities.names, "mask", "frame_labels", "video_id"])
    labels = raw.pop("frame_labels")
    videos = raw.pop("video_id")
    anomalous = int((labels != 0).sum())
    if anomalous == 0:
        raise DatasetError(
            f"the test split of '{data_dir}' has no anomalous frames among the {len(idx)} gate "
            "clips, so the AUROC drop cannot be measured; use a dataset with labelled anomalies "
            "or more --gate-clips."
        )
    summary = {
        "data": str(data_dir),
        "split": "test",
        "clips": len(idx),
        "of_clips": int(n),
        "frames": int(labels.size),
        "anomalous_frames": anomalous,
    }
    return GateData(
        raw, modalities, Normalizer(modalities, dict(normalization)), labels, videos, summary
    )


# -- streaming comparison ------------------------------------------------------------------------
@dataclass
class _Stats:
    """Per-output error statistics accumulated batch by batch (float64)."""

    ref_sq: float = 0.0
    tgt_sq: float = 0.0
    dot: float = 0.0
    err_sq: float = 0.0
    sum_abs: float = 0.0
    count: int = 0
    max_abs: float = 0.0
    worst: tuple[int, ...] = ()
    excess: float = 0.0
    nonfinite: int = 0
    rows: int = 0
    shape: tuple[int, ...] = ()

    def add(self, ref: np.ndarray, tgt: np.ndarray, tol: Tolerance) -> None:
        r, t = np.asarray(ref, np.float64), np.asarray(tgt, np.float64)
        self.shape = r.shape[1:]
        bad = ~np.isfinite(t)
        self.nonfinite += int(bad.sum())
        if bad.any():
            t = np.where(bad, 0.0, t)
        diff = np.abs(t - r)
        self.ref_sq += float((r * r).sum())
        self.tgt_sq += float((t * t).sum())
        self.dot += float((r * t).sum())
        self.err_sq += float((diff * diff).sum())
        self.sum_abs += float(diff.sum())
        self.count += diff.size
        if diff.size and float(diff.max()) >= self.max_abs:
            local = np.unravel_index(int(np.argmax(diff)), diff.shape)
            self.max_abs = float(diff.max())
            self.worst = (int(local[0]) + self.rows, *(int(i) for i in local[1:]))
        if tol.rtol is not None and diff.size:
            self.excess = max(self.excess, float((diff - tol.rtol * np.abs(r)).max()))
        self.rows += r.shape[0] if r.ndim else 1

    def comparison(self, name: str, tol: Tolerance) -> OutputComparison:
        ref_n, tgt_n, err_n = map(math.sqrt, (self.ref_sq, self.tgt_sq, self.err_sq))
        if ref_n == 0.0 and tgt_n == 0.0:
            cosine = 1.0
        elif ref_n == 0.0 or tgt_n == 0.0:
            cosine = 0.0
        else:
            cosine = self.dot / (ref_n * tgt_n)
        sqnr = (
            math.inf
            if err_n == 0.0
            else (-math.inf if ref_n == 0.0 else 20 * math.log10(ref_n / err_n))
        )
        failures = []
        if self.nonfinite:
            failures.append(f"{self.nonfinite} NaN/Inf value(s)")
        required = None
        if tol.atol is not None:
            required = max(0.0, self.excess)
            if required > tol.atol:
                failures.append(
                    f"allclose failed (atol {tol.atol:g}, rtol {tol.rtol:g}; needs atol >= "
                    f"{required:.3g})"
                )
        if tol.min_cosine is not None and cosine < tol.min_cosine:
            failures.append(f"cosine {cosine:.6f} < {tol.min_cosine:g}")
        if tol.min_sqnr_db is not None and sqnr < tol.min_sqnr_db:
            failures.append(f"SQNR {sqnr:.1f} dB < {tol.min_sqnr_db:g} dB")
        shape = (self.rows, *self.shape)
        return OutputComparison(
            name, "test split", shape, shape, self.max_abs, self.sum_abs / max(self.count, 1),
            cosine, sqnr, self.worst, required, tol, tuple(failures),
        )  # fmt: skip


def _sqnr(ref: np.ndarray, tgt: np.ndarray) -> float:
    r, t = np.asarray(ref, np.float64), np.asarray(tgt, np.float64)
    err = float(np.linalg.norm((r - t).ravel()))
    ref_n = float(np.linalg.norm(r.ravel()))
    if err == 0.0:
        return math.inf
    return -math.inf if ref_n == 0.0 else 20 * math.log10(ref_n / err)


# -- running ---------------------------------------------------------------------------------------
Feeds = Callable[[], Iterator[dict[str, np.ndarray]]]


@dataclass
class Reference:
    """FP32 outputs the gate keeps whole (scores, latents) and the feeds that made them."""

    graph: str
    feeds: Feeds
    kept: dict[str, np.ndarray] = field(default_factory=dict)


def graph_feeds(graph: str, data: GateData, z: np.ndarray | None) -> Feeds:
    """A re-iterable source of ``graph``'s feeds: modality graphs read the clips, decode reads
    ``z`` (the FP32 latent of the same clips)."""
    if graph != "decode":
        return lambda: data.batches()
    if z is None:
        raise ValueError("decode needs the FP32 latent of the gate clips")
    return lambda: ({"z": z[s : s + BATCH]} for s in range(0, len(z), BATCH))


KEEP = ("score", "z_mu")


def compare_runners(
    graph: str,
    precision: str,
    reference: Any,
    candidate: Any,
    feeds: Feeds,
    data: GateData,
) -> dict[str, Any]:
    """Run both models over ``feeds`` and return per-output comparisons and task metrics.

    Returns:
        ``{"outputs": {name: OutputComparison}, "task": {...}, "kept": {...}}``.
    """
    from edgevae.evaluate.metrics import psnr

    names = list(reference.outputs)

    def tol(name: str) -> Tolerance:
        return tolerance("onnx-fp32", "ort", precision, name)

    stats = {n: _Stats() for n in names}
    kept: dict[str, list[np.ndarray]] = {}
    cams = [s.name for s in data.modalities if s.kind is ModalityKind.video]
    psnr_acc: dict[str, dict[str, list[np.ndarray]]] = {c: {"ref": [], "cand": []} for c in cams}
    clip_rows = 0
    for feed in feeds():
        ref = reference.run(feed)
        out = candidate.run(feed)
        for n in names:
            stats[n].add(ref[n], out[n], tol(n))
        for n in KEEP:
            if n in ref:
                kept.setdefault(f"ref:{n}", []).append(np.asarray(ref[n]))
                kept.setdefault(f"cand:{n}", []).append(np.asarray(out[n]))
        rows = len(next(iter(ref.values())))
        raw = {k: v[clip_rows : clip_rows + rows] for k, v in data.raw.items()}
        clip_rows += rows
        for i, cam in enumerate(data.modalities.names):
            if cam not in cams or f"recon_{cam}" not in ref:
                continue
            present = raw["mask"][:, i] > 0
            if not present.any():
                continue
            target = data.normalizer.numpy(cam, raw[cam][present])
            psnr_acc[cam]["ref"].append(psnr(np.clip(ref[f"recon_{cam}"][present], 0, 1), target))
            psnr_acc[cam]["cand"].append(
                psnr(np.clip(np.nan_to_num(out[f"recon_{cam}"][present]), 0, 1), target)
            )
    comparisons = {n: stats[n].comparison(n, tol(n)) for n in names}
    whole = {k: np.concatenate(v) for k, v in kept.items()}
    task = _task_metrics(graph, precision, whole, psnr_acc, data)
    return {"outputs": comparisons, "task": task, "kept": whole}


def _task_metrics(
    graph: str,
    precision: str,
    kept: Mapping[str, np.ndarray],
    psnr_acc: Mapping[str, Mapping[str, list[np.ndarray]]],
    data: GateData,
) -> dict[str, Any]:
    from edgevae.evaluate.metrics import auroc, frame_level

    limits = task_gate(precision)
    task: dict[str, Any] = {}
    if "ref:score" in kept:
        values = {}
        for who in ("ref", "cand"):
            score = np.nan_to_num(kept[f"{who}:score"], nan=np.inf)
            s, labels, _ = frame_level(score, data.frame_labels, data.video_id)
            values[who] = auroc(s, labels != 0)
        drop = None
        if values["ref"] is not None and values["cand"] is not None:
            drop = values["ref"] - values["cand"]
        task["auroc"] = {
            "fp32": values["ref"],
            "artifact": values["cand"],
            "drop": drop,
            "max_drop": limits.max_auroc_drop,
            "passed": drop is not None and drop <= limits.max_auroc_drop,
        }
    per_cam = {}
    for cam, acc in psnr_acc.items():
        if not acc["ref"]:
            continue
        ref = float(np.mean(np.concatenate(acc["ref"])))
        cand = float(np.mean(np.concatenate(acc["cand"])))
        per_cam[cam] = {"fp32_db": ref, "artifact_db": cand, "drop_db": ref - cand}
    if per_cam:
        worst = max(v["drop_db"] for v in per_cam.values())
        task["psnr"] = {
            "per_camera": per_cam,
            "worst_drop_db": worst,
            "max_drop_db": limits.max_psnr_drop_db,
            "passed": worst <= limits.max_psnr_drop_db,
        }
    return task


# -- per-layer report ----------------------------------------------------------------------------
def _with_outputs(data: bytes, names: Sequence[str]) -> bytes:
    """``data`` with ``names`` (float tensors) added as graph outputs."""
    import onnx

    model = onnx.load_from_string(data)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    return model.SerializeToString()


def _pairs(pre: Any, quant: Any, excluded: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """Per weight layer of ``pre``: ``(name, op, (ref_in, q_in), (ref_out, q_out))`` tensor
    names to compare (None where the quantized graph lost the tensor).

    The output is compared as the next layer consumes it: after the layer's own output Q/DQ
    when it has one (CPU artifact; a Relu the quantizer folded into that Q is applied there).
    The input is compared before this layer's input Q/DQ, unless it is the Q/DQ'd output of a
    quantized layer (then that layer already owns the error), so a layer's loss counts its own
    activation, weight and output quantization once.
    """
    q_tensors = {t for n in quant.graph.node for t in n.output} | {
        i.name for i in quant.graph.input
    }
    q_users: dict[str, list[Any]] = {}
    for n in quant.graph.node:
        for i in n.input:
            q_users.setdefault(i, []).append(n)
    pre_users: dict[str, list[Any]] = {}
    pre_nodes = {o: n for n in pre.graph.node for o in n.output}
    for n in pre.graph.node:
        for i in n.input:
            pre_users.setdefault(i, []).append(n)

    def present(tensor: str) -> tuple[str, bool] | None:
        """The tensor (or the Relu/Clip output the quantizer folded it into) in ``quant``, and
        whether an activation was folded."""
        folded = False
        while tensor not in q_tensors:
            nxt = pre_users.get(tensor, [])
            if len(nxt) != 1 or nxt[0].op_type not in ("Relu", "Clip"):
                return None
            tensor, folded = nxt[0].output[0], True
        return tensor, folded

    def dequantized(tensor: str) -> str | None:
        for q in q_users.get(tensor, []):
            if q.op_type == "QuantizeLinear":
                for dq in q_users.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return None

    def from_quantized_layer(tensor: str) -> bool:
        node = pre_nodes.get(tensor)
        while node is not None and node.op_type in ("Relu", "Clip"):
            node = pre_nodes.get(node.input[0])
        return node is not None and node.op_type in WEIGHT_OPS and node.name not in excluded

    pairs = []
    for n in pre.graph.node:
        if n.op_type not in WEIGHT_OPS:
            continue
        out, inp = present(n.output[0]), present(n.input[0])
        out_pair = in_pair = None
        if out is not None:
            name, folded = out
            dq = dequantized(name)
            if dq is not None or not folded:  # a folded Relu exists only after the Q
                out_pair = (name, dq or name)
        if inp is not None:
            name = inp[0]
            dq = dequantized(name) if from_quantized_layer(name) else None
            in_pair = (name, dq or name)
        pairs.append((n.name, n.op_type, in_pair, out_pair))
    return pairs


def layer_report(
    fp32_pre: bytes,
    quantized: bytes,
    feeds: Feeds,
    excluded: Mapping[str, str],
    rows: int = LAYER_ROWS,
    top: int = 8,
) -> dict[str, Any]:
    """Rank the weight layers of an INT8 artifact by the SQNR they lose against FP32.

    Per weight layer: the SQNR of its output against FP32 (as the next layer consumes it), the
    SQNR of its input, and the difference (``loss_db``: what this layer's own quantization
    costs). Quantized layers are ranked worst first by the relative noise power they add,
    ``10^(-SQNR_out/10) - 10^(-SQNR_in/10)`` (``added_noise``); the two worst make the suggested
    ``--exclude`` regex.

    Args:
        fp32_pre: the pre-processed FP32 graph the artifact was quantized from (same names).
        quantized: the artifact.
        feeds: the gate's feeds (the first ``rows`` rows are used).
        excluded: nodes kept FP32 and why.
        rows: rows of data to compare on.
        top: layers listed.

    Returns:
        ``{"layers": [{"node", "op_type", "quantized", "why_fp32", "sqnr_db", "input_sqnr_db",
        "loss_db", "added_noise"}], "suggested_exclude": regex or None, "rows": n}`` (worst first).
    """
    import onnx

    from edgevae.runtime.ort_runner import OrtRunner

    pre, quant = onnx.load_from_string(fp32_pre), onnx.load_from_string(quantized)
    pairs = _pairs(pre, quant, excluded)
    wanted = {p for _, _, i, o in pairs for p in (i, o) if p is not None}
    ref_runner = OrtRunner(_with_outputs(fp32_pre, sorted({r for r, _ in wanted})), name="fp32")
    q_runner = OrtRunner(_with_outputs(quantized, sorted({q for _, q in wanted})), name="int8")
    acc: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {
        p: ([], []) for p in wanted
    }
    seen = 0
    for feed in feeds():
        if seen >= rows:
            break
        a, b = ref_runner.run(feed), q_runner.run(feed)
        for (r, q), (ra, qa) in acc.items():
            ra.append(np.asarray(a[r], np.float64))
            qa.append(np.asarray(b[q], np.float64))
        seen += len(next(iter(feed.values())))
    sqnr = {p: _sqnr(np.concatenate(ra), np.concatenate(qa)) for p, (ra, qa) in acc.items()}
    out = []
    for name, op, inp, outp in pairs:
        s_out = sqnr.get(outp) if outp else None
        s_in = sqnr.get(inp) if inp else None
        loss = None
        if s_out is not None and s_in is not None and math.isfinite(s_out) and math.isfinite(s_in):
            loss = s_in - s_out
        out.append(
            {
                "node": name,
                "op_type": op,
                "quantized": name not in excluded,
                "why_fp32": excluded.get(name),
                "sqnr_db": json_float(s_out),
                "input_sqnr_db": json_float(s_in),
                "loss_db": loss,
            }
        )

    def badness(row: dict[str, Any]) -> float:
        # relative noise power this layer adds: 10^(-SQNR_out/10) - 10^(-SQNR_in/10)
        if not row["quantized"] or not isinstance(row["sqnr_db"], float):
            return -math.inf
        s_in = row["input_sqnr_db"]
        n_in = 10 ** (-s_in / 10) if isinstance(s_in, float) else 0.0
        return 10 ** (-row["sqnr_db"] / 10) - n_in

    for row in out:
        noise = badness(row)
        row["added_noise"] = noise if math.isfinite(noise) else None
    ranked = sorted(out, key=badness, reverse=True)
    worst = [r for r in ranked if r["quantized"]][:2]
    suggestion = "^(" + "|".join(re.escape(r["node"]) for r in worst) + ")$" if worst else None
    return {"rows": min(seen, rows), "layers": ranked[:top], "suggested_exclude": suggestion}


# -- verdict ---------------------------------------------------------------------------------------
def verdict(outputs: Mapping[str, OutputComparison], task: Mapping[str, Any]) -> str:
    """``passed`` when every output comparison and every task metric passed, else ``failed``."""
    ok = all(c.passed for c in outputs.values()) and all(t["passed"] for t in task.values())
    return "passed" if ok else "failed"


def first_failure(outputs: Mapping[str, OutputComparison], task: Mapping[str, Any]) -> str | None:
    """One line naming the first failed check, or None."""
    for c in outputs.values():
        if not c.passed:
            return c.line()
    for name, t in task.items():
        if t["passed"]:
            continue
        if name == "auroc":
            drop = "n/a" if t["drop"] is None else f"{t['drop']:.4f}"
            return f"FAILED | frame AUROC drop {drop} > {t['max_drop']:g}"
        worst, limit = t["worst_drop_db"], t["max_drop_db"]
        return f"FAILED | reconstruction PSNR drop {worst:.2f} dB > {limit:g} dB"
    return None


def outputs_to_dict(outputs: Mapping[str, OutputComparison]) -> dict[str, Any]:
    """JSON-ready per-output comparisons."""
    return {n: c.to_dict() for n, c in outputs.items()}
