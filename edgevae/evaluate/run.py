"""The evaluation stage: ``evaluate(run_dir, data_dir, EvalConfig) -> out dir``.

Writes, atomically (a hidden partial directory renamed into place when complete)::

    OUT/metrics.json                 the numbers (schema below)
    OUT/metrics.json.manifest.json   what made them (config, input hashes, tool versions)
    OUT/roc.png                      ROC curves, overall and per anomaly type
    OUT/timeline.png                 frame score over test videos, anomalies shaded by type
    OUT/reconstruction.png           a normal clip: original / reconstructed / imputed
    OUT/reconstruction_<type>.png    the test clip with the most frames of each anomaly type

``metrics.json`` schema (metric dicts as :func:`edgevae.evaluate.metrics.detection_metrics`:
``auroc``, ``auprc``, ``eer``, ``auroc_minmax``, ``auprc_minmax``, ``eer_minmax``,
``auroc_macro``, ``macro_videos``, ``frames``, ``anomalous_frames``; undefined values are null)::

    {
      "model": {"run_dir", "kind", "preset", "parameters", "edgevae_version"},
      "data": {"path", "index_sha256", "split", "clips", "videos", "label_frames"},
      "frames": int,                              test frames scored
      "anomaly_types": [type names by id],        id 0 = "normal"
      "part_names": [score part names],           in score_parts column order
      "anomalous_frames": {type: int},            labelled frames per anomaly type
      "overall": metrics,                         combined score, all anomaly types vs normal
      "per_type": {type: metrics},                one type's frames vs all normal frames
      "parts": {part: {"overall": auroc, "per_type": {type: auroc}}},
                                                  each standardised score part alone
                                                  (recon_<modality>, kl_prior, cross_modal);
                                                  null for a modality the model ignores
      "camera_masked": {camera: {"overall": metrics, "per_type": {type: metrics}}},
                                                  the combined score with that camera's mask
                                                  column set to 0 for every clip
      "imputation": {camera: {"model_psnr", "reconstruction_psnr", "mean_frame_psnr",
                              "nearest_camera_psnr", "nearest_camera", "clips"}},
                                                  PSNR (dB, frames in [0, 1], mean over clips)
                                                  of the camera rebuilt from the other
                                                  modalities vs baselines: the mean train frame
                                                  and a copy of the best other camera
      "imputation_split": "val" | "test (normal clips)",
      "figures": [file names],
      "config": EvalConfig.to_dict()
    }

Frame-level convention: every frame of a clip gets its clip's score (clips are consecutive and
non-overlapping); frame labels come from the dataset's ``frame_labels``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevae._util.artifacts import sha256_file, write_json_atomic, write_manifest
from edgevae.data.format import DatasetReader, SplitReader, open_dataset
from edgevae.data.transforms import Normalizer
from edgevae.errors import ConfigError, DatasetError, OutputExistsError, ShapeError
from edgevae.evaluate import metrics
from edgevae.modalities import ModalityKind, ModalitySet

if TYPE_CHECKING:
    from edgevae.api import Model

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as each stage advances (``done`` of ``total`` clips)."""


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate.

    Args:
        batch_size: clips per forward pass.
        split: the labelled split to score (``test``).
        imputation_split: normal clips for imputation PSNR (``val``); when the dataset has no
            such split, the normal clips of ``split`` are used.
        imputation_clips: at most this many clips (evenly spaced) for imputation PSNR.
        mask_cameras: also score with each camera masked out.
        figures: write the PNG figures.
        timeline_videos: videos drawn in the timeline figure.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        overwrite: replace a non-empty output directory.

    Raises:
        ConfigError: an invalid value, naming the field.
    """

    batch_size: int = 64
    split: str = "test"
    imputation_split: str = "val"
    imputation_clips: int = 256
    mask_cameras: bool = True
    figures: bool = True
    timeline_videos: int = 6
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "imputation_clips", "timeline_videos"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"EvalConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("split", "imputation_split"):
            if getattr(self, name) not in ("train", "val", "test"):
                raise ConfigError(
                    f"EvalConfig.{name} must be 'train', 'val' or 'test', got "
                    f"{getattr(self, name)!r}."
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown EvalConfig keys {unknown}; valid keys: {sorted(known)}.")
        return cls(**d)


# -- checks ----------------------------------------------------------------------------------------
def check_modalities(model: ModalitySet, data: ModalitySet) -> None:
    """Raise ShapeError (one line naming the first differing modality) unless they match."""
    fix = "evaluate on data with the modalities the model was trained on."
    if model.names != data.names:
        missing = [n for n in model.names if n not in data.names]
        extra = [n for n in data.names if n not in model.names]
        detail = (
            f"lacks {missing}"
            if missing
            else f"has extra {extra}"
            if extra
            else f"orders them {list(data.names)}"
        )
        raise ShapeError(
            f"dataset modalities do not match the model: the model takes "
            f"{list(model.names)}, the dataset {detail}; {fix}"
        )
    for m, d in zip(model, data, strict=True):
        if (m.kind, m.shape, m.channels) != (d.kind, d.shape, d.channels):
            raise ShapeError(
                f"dataset modality '{d.name}' is {d.kind.value} {d.shape}, the model expects "  # type: ignore[union-attr]
                f"{m.kind.value} {m.shape}; {fix}"  # type: ignore[union-attr]
            )


def _check_test_split(reader: DatasetReader, split: str) -> SplitReader:
    fix = (
        "evaluation needs labelled anomalous test clips: generate data with `edgevae data synth` "
        "(its test split holds labelled anomalies) or add a test split with frame_labels."
    )
    if split not in reader.splits or len(reader.split(split)) == 0:
        raise DatasetError(
            f"dataset '{reader.path}' has no clips in a '{split}' split (it has: "
            f"{', '.join(reader.splits)}); {fix}"
        )
    if not any(reader.anomalous_frames(split).values()):
        raise DatasetError(
            f"the '{split}' split of dataset '{reader.path}' has no anomalous frames, so AUROC is "
            f"undefined; {fix}"
        )
    return reader.split(split)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(
            f"output directory '{out}' is not empty; pass --overwrite to replace it or choose "
            "another --out."
        )


def _partial_dir(out: Path) -> Path:
    """A hidden sibling of ``out`` that is renamed into place once complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the final directory follows the umask
    return tmp


# -- scoring ---------------------------------------------------------------------------------------
def _cameras(modalities: ModalitySet) -> list[str]:
    return [s.name for s in modalities if s.kind is ModalityKind.video]


def _score_split(
    model: Model, split: SplitReader, cfg: EvalConfig, progress: ProgressFn
) -> dict[str, Any]:
    """One pass over ``split``: scores, parts, and scores with each camera masked out."""
    names = model.modalities.names
    active = _active(model)
    masked = [
        c
        for c in _cameras(model.modalities)
        if cfg.mask_cameras and active[model.modalities.index(c)] and active.sum() > 1
    ]
    acc: dict[str, list[np.ndarray]] = {}

    def add(key: str, value: np.ndarray) -> None:
        acc.setdefault(key, []).append(np.asarray(value))

    total = len(split)
    for start in range(0, total, cfg.batch_size):
        raw = split.read(np.arange(start, min(start + cfg.batch_size, total)))
        arrays = {n: raw[n] for n in names}
        mask = raw["mask"].astype(np.float32)
        score, parts, _ = model.score(arrays, mask)
        add("position", np.arange(start, start + len(score)))  # storage order in the split
        add("score", score)
        add("parts", parts)
        for key in ("frame_labels", "video_id", "clip_index"):
            add(key, raw[key])
        for cam in masked:
            m = mask.copy()
            m[:, model.modalities.index(cam)] = 0.0
            add(f"masked:{cam}", model.score(arrays, m)[0])
        progress(f"scoring '{split.name}'", min(start + cfg.batch_size, total), total)
    out = {k: np.concatenate(v) for k, v in acc.items()}
    order = np.lexsort((out["clip_index"], out["video_id"]))  # time order within each video
    return {k: v[order] for k, v in out.items()} | {"masked": masked}


def _frames(clip_scores: np.ndarray, scored: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return metrics.frame_level(clip_scores, scored["frame_labels"], scored["video_id"])


# -- imputation ------------------------------------------------------------------------------------
def _mean_frames(
    reader: DatasetReader, normalizer: Normalizer, cameras: list[str], batch_size: int
) -> dict[str, np.ndarray]:
    """Per camera: the mean train frame (C, H, W) in [0, 1], streamed over the train split."""
    if "train" not in reader.splits or not cameras:
        return {}
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(cameras, 0)
    cols = {c: reader.modalities.index(c) for c in cameras}
    for raw in reader.split("train").iter_batches(batch_size, [*cameras, "mask"]):
        for cam in cameras:
            present = raw["mask"][:, cols[cam]] > 0
            if not present.any():
                continue
            spec = reader.modalities[cam]
            x = normalizer.numpy(cam, raw[cam][present]).astype(np.float64)
            x = x.reshape(len(x), spec.frames, spec.channels, *spec.shape[1:])
            s = x.sum(axis=(0, 1))  # (C, H, W)
            sums[cam] = sums[cam] + s if cam in sums else s
            counts[cam] += len(x) * spec.frames
    return {c: sums[c] / counts[c] for c in sums}


def _imputation_clips(
    reader: DatasetReader, cfg: EvalConfig
) -> tuple[SplitReader | None, np.ndarray, str]:
    """The normal clips used for imputation PSNR: (split, indices, description)."""
    if cfg.imputation_split in reader.splits and len(reader.split(cfg.imputation_split)):
        split = reader.split(cfg.imputation_split)
        labels = split.read(np.arange(len(split)), ["frame_labels"])["frame_labels"]
        what = cfg.imputation_split
    else:
        split = reader.split(cfg.split)
        labels = split.read(np.arange(len(split)), ["frame_labels"])["frame_labels"]
        what = f"{cfg.split} (normal clips)"
    normal = np.nonzero((labels == 0).all(axis=1))[0]
    if normal.size == 0:
        return None, normal, what
    take = np.unique(np.linspace(0, normal.size - 1, min(cfg.imputation_clips, normal.size)))
    return split, normal[take.round().astype(int)], what


def _imputation(
    model: Model,
    reader: DatasetReader,
    normalizer: Normalizer,
    cfg: EvalConfig,
    progress: ProgressFn,
) -> tuple[dict[str, Any], str, tuple[SplitReader, int] | None]:
    """Imputation PSNR per camera vs the mean-frame and nearest-camera baselines."""
    mods = model.modalities
    cameras = [c for c in _cameras(mods) if _active(model)[mods.index(c)]]
    split, idx, what = _imputation_clips(reader, cfg)
    if not cameras or len(mods) < 2 or split is None:
        return {}, what, None
    means = _mean_frames(reader, normalizer, cameras, cfg.batch_size)
    psnrs: dict[tuple[str, str], list[np.ndarray]] = {}

    def add(cam: str, key: str, value: np.ndarray) -> None:
        psnrs.setdefault((cam, key), []).append(value)

    active = _active(model)
    for start in range(0, len(idx), cfg.batch_size):
        raw = split.read(idx[start : start + cfg.batch_size])
        arrays = {n: raw[n] for n in mods.names}
        mask = raw["mask"].astype(np.float32)
        used = mask * active  # what the model sees: a baseline ignores some modalities
        recon = model.reconstruct(arrays, mask)
        for cam in cameras:
            col = mods.index(cam)
            ok = (used[:, col] > 0) & (used.sum(axis=1) - used[:, col] > 0)
            if not ok.any():
                continue
            spec = mods[cam]
            target = normalizer.numpy(cam, raw[cam][ok])
            sub = {n: a[ok] for n, a in arrays.items()}
            imputed = model.impute(sub, [cam], mask[ok])[cam]
            add(cam, "model_psnr", metrics.psnr(_unit(normalizer, cam, imputed), target))
            add(
                cam,
                "reconstruction_psnr",
                metrics.psnr(_unit(normalizer, cam, recon[cam][ok]), target),
            )
            if cam in means:
                frame = np.tile(means[cam], (spec.frames, 1, 1))  # (C, H, W) -> (T*C, H, W)
                add(cam, "mean_frame_psnr", metrics.psnr(frame, target))
            for other in cameras:
                o = mods[other]
                if other == cam or (o.shape, o.channels) != (spec.shape, spec.channels):
                    continue
                both = mask[ok, mods.index(other)] > 0
                if both.any():
                    copy = normalizer.numpy(other, raw[other][ok][both])
                    add(cam, f"copy:{other}", metrics.psnr(copy, target[both]))
        progress("imputation", min(start + cfg.batch_size, len(idx)), len(idx))
    result: dict[str, Any] = {}
    for cam in cameras:
        if (cam, "model_psnr") not in psnrs:
            continue
        mean = {k: float(np.mean(np.concatenate(v))) for (c, k), v in psnrs.items() if c == cam}
        copies = {k.split(":", 1)[1]: v for k, v in mean.items() if k.startswith("copy:")}
        nearest = max(copies, key=copies.__getitem__) if copies else None
        result[cam] = {
            "model_psnr": mean["model_psnr"],
            "reconstruction_psnr": mean["reconstruction_psnr"],
            "mean_frame_psnr": mean.get("mean_frame_psnr"),
            "nearest_camera_psnr": copies[nearest] if nearest else None,
            "nearest_camera": nearest,
            "clips": int(sum(len(v) for v in psnrs[(cam, "model_psnr")])),
        }
    return result, what, (split, int(idx[0]))


def _active(model: Model) -> np.ndarray:
    """(M,) 1 for the modalities the model uses (a baseline may ignore some), else 0."""
    active = getattr(model.module, "active", None) or (True,) * len(model.modalities)
    return np.asarray(active, np.float32)


def _unit(normalizer: Normalizer, name: str, raw: np.ndarray) -> np.ndarray:
    """Raw video (0..255 for uint8 storage) -> [0, 1], clipped."""
    return np.clip(normalizer.numpy(name, raw), 0.0, 1.0)


# -- figures ---------------------------------------------------------------------------------------
def _reconstruction_figure(
    model: Model,
    normalizer: Normalizer,
    split: SplitReader,
    index: int,
    path: Path,
    title: str,
    type_names: list[str],
) -> Path:
    from edgevae.evaluate.plots import plot_reconstruction

    mods = model.modalities
    raw = split.read([index])
    arrays = {n: raw[n] for n in mods.names}
    mask = raw["mask"].astype(np.float32)
    recon = model.reconstruct(arrays, mask)
    original = {n: normalizer.numpy(n, raw[n], mask[:, i])[0] for i, n in enumerate(mods.names)}
    used = mask[0] * _active(model)
    rebuilt = {n: normalizer.numpy(n, recon[n])[0] for i, n in enumerate(mods.names) if used[i]}
    imputed = {}
    for i, n in enumerate(mods.names):
        if _active(model)[i] and used.sum() - used[i] > 0:
            imputed[n] = normalizer.numpy(n, model.impute(arrays, [n], mask)[n])[0]
    for n in _cameras(mods):
        for d in (rebuilt, imputed):
            if n in d:
                d[n] = np.clip(d[n], 0.0, 1.0)
    return plot_reconstruction(
        mods,
        original,
        rebuilt,
        imputed,
        path,
        title=title,
        frame_labels=raw["frame_labels"][0],
        type_names=type_names,
    )


def _figures(
    model: Model,
    normalizer: Normalizer,
    reader: DatasetReader,
    cfg: EvalConfig,
    scored: Mapping[str, Any],
    normal_clip: tuple[SplitReader, int] | None,
    tmp: Path,
) -> list[str]:
    from edgevae.evaluate.plots import plot_roc, plot_timeline

    types = reader.anomaly_types
    scores, labels, videos = _frames(scored["score"], scored)
    name = Path(model.run_dir).name
    written = [
        plot_roc(scores, labels, videos, types, tmp / "roc.png", title=f"{name}: frame-level ROC"),
        plot_timeline(
            scores,
            labels,
            videos,
            types,
            tmp / "timeline.png",
            max_videos=cfg.timeline_videos,
            title=f"{name}: anomaly score per frame (shaded: labelled anomalies)",
        ),
    ]
    if normal_clip is not None:
        split, index = normal_clip
        written.append(
            _reconstruction_figure(
                model,
                normalizer,
                split,
                index,
                tmp / "reconstruction.png",
                f"{name}: a normal '{split.name}' clip",
                types,
            )
        )
    test = reader.split(cfg.split)
    for t, type_name in enumerate(types):
        counts = (scored["frame_labels"] == t).sum(axis=1)
        if t == 0 or not counts.any():
            continue
        i = int(np.argmax(counts))
        written.append(
            _reconstruction_figure(
                model,
                normalizer,
                test,
                int(scored["position"][i]),
                tmp / f"reconstruction_{type_name}.png",
                f"{name}: test clip with '{type_name}' (video {int(scored['video_id'][i])}, clip "
                f"{int(scored['clip_index'][i])})",
                types,
            )
        )
    return [p.name for p in written]


# -- the stage -------------------------------------------------------------------------------------
def evaluate(
    run_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    config: EvalConfig | None = None,
    progress: ProgressFn | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Evaluate a trained run on a labelled dataset; write metrics.json and figures.

    Args:
        run_dir: a run directory written by ``edgevae train``.
        data_dir: a dataset whose ``config.split`` holds labelled anomalies.
        config: evaluation options (default :class:`EvalConfig`).
        progress: ``progress(stage, done, total)`` callback.
        out_dir: output directory (default ``RUN/eval``); written atomically.

    Returns:
        The output directory.

    Raises:
        CheckpointError: a missing, corrupt or incompatible run directory.
        DatasetError: a missing/corrupt dataset, no test split, or no anomalous test frames.
        ShapeError: dataset modalities that differ from the model's (names the modality).
        OutputExistsError: a non-empty ``out_dir`` without ``overwrite``.
        ConfigError: bad options (e.g. an unavailable device).
    """
    import edgevae

    cfg = config or EvalConfig()
    report = progress or (lambda stage, done, total: None)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "eval"
    _check_out(out, cfg.overwrite)  # before any heavy work
    model = edgevae.load(run_dir, device=cfg.device, batch_size=cfg.batch_size)
    reader = open_dataset(data_dir, verify="size")
    check_modalities(model.modalities, reader.modalities)
    test = _check_test_split(reader, cfg.split)
    normalizer = Normalizer(model.modalities, model.meta["normalization"])

    scored = _score_split(model, test, cfg, report)
    types = reader.anomaly_types
    scores, labels, videos = _frames(scored["score"], scored)
    result: dict[str, Any] = {
        "model": _model_info(model),
        "data": {
            "path": str(Path(data_dir)),
            "index_sha256": sha256_file(Path(data_dir) / "index.json"),
            "split": cfg.split,
            "clips": len(test),
            "videos": int(np.unique(scored["video_id"]).size),
            "label_frames": reader.label_frames,
        },
        "frames": int(labels.size),
        "anomaly_types": list(types),
        "part_names": list(model.part_names),
        "anomalous_frames": {name: int((labels == t).sum()) for t, name in enumerate(types) if t},
        **metrics.detection_report(scores, labels, videos, types),
        "parts": _part_reports(model, scored, labels, types),
        "camera_masked": {
            cam: metrics.detection_report(
                _frames(scored[f"masked:{cam}"], scored)[0], labels, videos, types
            )
            for cam in scored["masked"]
        },
    }
    imputation, imputation_split, normal_clip = _imputation(model, reader, normalizer, cfg, report)
    result["imputation"] = imputation
    result["imputation_split"] = imputation_split
    result["config"] = cfg.to_dict()

    _check_out(out, cfg.overwrite)
    tmp = _partial_dir(out)
    try:
        result["figures"] = (
            _figures(model, normalizer, reader, cfg, scored, normal_clip, tmp)
            if cfg.figures
            else []
        )
        metrics_path = write_json_atomic(tmp / "metrics.json", result)
        write_manifest(
            metrics_path,
            kind="evaluation",
            config=cfg.to_dict(),
            inputs={
                "model.safetensors": sha256_file(Path(run_dir) / "model.safetensors"),
                "dataset index.json": result["data"]["index_sha256"],
            },
            details={"figures": result["figures"], "frames": result["frames"]},
            modules=("numpy", "torch", "scikit-learn", "matplotlib"),
        )
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _part_reports(
    model: Model, scored: Mapping[str, Any], labels: np.ndarray, types: list[str]
) -> dict[str, Any]:
    """Micro AUROC of each score part alone; None for recon parts of ignored modalities."""
    active = _active(model)
    reports = {}
    for p, part in enumerate(model.part_names):
        if p < len(active) and not active[p]:  # a baseline's unused modality: its part is 0
            unused = metrics.auroc_report(np.zeros(labels.size), labels, types)
            reports[part] = {"overall": None, "per_type": dict.fromkeys(unused["per_type"])}
            continue
        frame_scores = _frames(scored["parts"][:, p], scored)[0]
        reports[part] = metrics.auroc_report(frame_scores, labels, types)
    return reports


def _model_info(model: Model) -> dict[str, Any]:
    meta = model.meta
    config = meta.get("model_config", {})
    return {
        "run_dir": str(model.run_dir),
        "kind": config.get("kind"),
        "preset": config.get("preset"),
        "parameters": meta.get("parameters"),
        "edgevae_version": meta.get("edgevae_version"),
    }
