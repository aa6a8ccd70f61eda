"""Look at a dataset: a summary (splits, anomaly counts, modalities, normalisation) and a contact
sheet PNG showing a normal clip and one clip of each anomaly type, every modality side by side.

Works for any edgevae dataset (any modality kinds); datasets made by ``edgevae data synth`` get
extra hints on the sheet: the pitch each tracked object should produce (from the motion reading)
drawn over the spectrogram, and the anomaly details recorded in the index.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.data.format import DatasetReader, open_dataset
from edgevae.errors import ConfigError
from edgevae.modalities import ModalityKind, ModalitySpec


def _open(dataset: DatasetReader | str | os.PathLike[str], verify: str) -> DatasetReader:
    return dataset if isinstance(dataset, DatasetReader) else open_dataset(dataset, verify=verify)


def summarize(
    dataset: DatasetReader | str | os.PathLike[str], *, verify: str = "hash"
) -> dict[str, Any]:
    """A JSON-ready summary of a dataset.

    Args:
        dataset: an open dataset or its directory.
        verify: shard check when opening a path (``hash``, ``size`` or ``none``).

    Returns:
        ``{"path", "format_version", "generator", "generator_version", "seed", "preset",
        "anomaly_types", "label_frames", "modalities": [...], "splits": {split: {"clips",
        "videos", "frames", "anomalous_frames": {type: n}, "anomalous_fraction"}},
        "normalization": {modality: {...}}}``.

    Raises:
        DatasetError: missing, incomplete or corrupt dataset (from :func:`open_dataset`).
    """
    reader = _open(dataset, verify)
    meta = reader.index.get("meta", {})
    splits = {}
    for name in reader.splits:
        entry = reader.index["splits"][name]
        frames = int(entry.get("clips", 0)) * reader.label_frames
        by_type = {t: 0 for t in reader.anomaly_types[1:]}
        by_type.update(reader.anomalous_frames(name))
        anomalous = sum(by_type.values())
        splits[name] = {
            "clips": int(entry.get("clips", 0)),
            "videos": int(entry.get("videos", 0)),
            "frames": frames,
            "anomalous_frames": by_type,
            "anomalous_fraction": round(anomalous / frames, 4) if frames else 0.0,
        }
    return {
        "path": str(reader.path),
        "format_version": reader.index.get("format_version"),
        "generator": meta.get("generator"),
        "generator_version": meta.get("generator_version"),
        "seed": meta.get("seed"),
        "preset": meta.get("preset"),
        "anomaly_types": list(reader.anomaly_types),
        "label_frames": reader.label_frames,
        "modalities": [
            {
                "name": s.name,
                "kind": s.kind.value,  # type: ignore[union-attr]
                "shape": list(s.shape),
                "dtype": s.dtype,
                "share": s.share,
            }
            for s in reader.modalities
        ],
        "splits": splits,
        "normalization": _normalization_summary(reader),
    }


def _normalization_summary(reader: DatasetReader) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in reader.modalities:
        st = reader.normalization.get(spec.name, {})
        if spec.kind is ModalityKind.video:
            scale = st.get("scale")
            rule = "as stored" if not scale else f"x * {scale:.6g}"
            if scale and abs(scale * 255.0 - 1.0) < 1e-9:
                rule = "x / 255"
            out[spec.name] = {"rule": rule}
            continue
        mean = np.asarray(st.get("mean", [np.nan]), np.float64)
        std = np.asarray(st.get("std", [np.nan]), np.float64)
        out[spec.name] = {
            "rule": f"(x - mean) / std, {mean.size} stat(s)",
            "stat_shape": st.get("shape"),
            "mean_range": [round(float(mean.min()), 4), round(float(mean.max()), 4)],
            "std_range": [round(float(std.min()), 4), round(float(std.max()), 4)],
        }
    return out


# -- contact sheet ---------------------------------------------------------------------------------
def _pick_clips(reader: DatasetReader, split: str) -> list[tuple[str, int]]:
    """(row title type, clip index) for a normal clip and one clip of each anomaly type present.

    An anomaly clip is chosen where its segment starts near the clip's middle and lasts to its
    end, so the sheet shows the clip before and during the anomaly.
    """
    labels = reader.split(split).read(np.arange(len(reader.split(split))), ["frame_labels"])[
        "frame_labels"
    ]  # (n, L) uint8
    n_frames = labels.shape[1]
    rows: list[tuple[str, int]] = []
    normal = np.nonzero((labels == 0).all(axis=1))[0]
    if normal.size:
        rows.append((reader.anomaly_types[0], int(normal[min(1, normal.size - 1)])))
    for type_id, name in enumerate(reader.anomaly_types[1:], start=1):
        hit = labels == type_id  # (n, L)
        clips = np.nonzero(hit.any(axis=1))[0]
        if not clips.size:
            continue
        first = hit[clips].argmax(axis=1)  # first labelled frame in each clip
        onset = (first >= 1) & (first <= n_frames - 2) & hit[clips, -1]  # normal -> anomalous
        score = 10 * onset - np.abs(first - (n_frames * 3) // 8)
        rows.append((name, int(clips[int(np.argmax(score))])))
    return rows


def _segment_note(meta: dict[str, Any], video: int, first: int, last: int, kind: str) -> str:
    """Details of the synth segment of type ``kind`` overlapping frames [first, last)."""
    for seg in meta.get("segments", []):
        same = seg.get("video_id") == video and seg.get("type") == kind
        if same and seg["start_frame"] < last and seg["end_frame"] > first:
            extra = {
                k: v
                for k, v in seg.items()
                if k not in {"video_id", "type", "start_frame", "end_frame", "jump_frames"}
            }
            return "\n".join(f"{k}={v}" for k, v in extra.items())
    return ""


_DESCRIPTIONS = {
    "normal": "normal",
    "teleport": "teleport:\nan object jumps",
    "speed": "speed:\nan object much faster",
    "intruder": "intruder: an extra object\nseen, not heard/tracked",
    "av_desync": "av_desync: audio\nfrom another moment",
    "camera_fault": "camera_fault",
    "sensor_fault": "sensor_fault:\ntracker wrong",
}


_KIND_TITLES = {
    ModalityKind.spectrogram: "log-mel",
    ModalityKind.series: "series",
    ModalityKind.vector: "vector",
}
_KIND_XLABELS = {
    ModalityKind.spectrogram: "frame (y: mel bin)",
    ModalityKind.series: "step",
    ModalityKind.vector: "element",
}


def contact_sheet(
    dataset: DatasetReader | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    frames_per_camera: int = 4,
    dpi: int = 80,
    verify: str = "hash",
) -> Path:
    """Write a PNG contact sheet: one row per clip (normal first, then each anomaly type).

    Each row shows ``frames_per_camera`` evenly spaced frames of every video modality (anomalous
    frames framed in red), each spectrogram (labelled frames marked by a red bar; for synth
    datasets the pitch each tracked object should make, from its motion reading, dashed), and
    each series (positions for synth motion; anomalous steps shaded) or vector.

    Args:
        dataset: an open dataset or its directory.
        out: PNG path (written atomically).
        split: split to draw from (default ``test`` if present, else the first split).
        frames_per_camera: frames shown per video modality and clip.
        dpi: resolution of the PNG.
        verify: shard check when opening a path.

    Returns:
        The PNG path.

    Raises:
        DatasetError: missing, incomplete or corrupt dataset, or no such split.
        ConfigError: ``out`` is a directory or cannot be written, ``frames_per_camera < 1``.
    """
    out = Path(out)
    if out.is_dir():
        raise ConfigError(
            f"--plot '{out}' is a directory; give a PNG file path such as "
            f"'{out / 'contact_sheet.png'}'."
        )
    if isinstance(frames_per_camera, bool) or not (
        isinstance(frames_per_camera, int) and frames_per_camera >= 1
    ):
        raise ConfigError(
            f"frames_per_camera must be a positive integer, got {frames_per_camera!r}."
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgevae._util.artifacts import atomic_path

    reader = _open(dataset, verify)
    split = split or ("test" if "test" in reader.splits else reader.splits[0])
    meta = reader.index.get("meta", {})
    rows = _pick_clips(reader, split)
    clips = reader.split(split).read(np.array([c for _, c in rows], np.int64))
    videos = [s for s in reader.modalities if s.kind is ModalityKind.video]
    others = [s for s in reader.modalities if s.kind is not ModalityKind.video]
    n_lab = reader.label_frames
    # columns: for each camera `frames_per_camera` thumbnails and a spacer, then one per other
    ratios: list[float] = []
    for _ in videos:
        ratios += [1.0] * frames_per_camera + [0.12]
    ratios += [3.0 if s.kind is ModalityKind.spectrogram else 3.2 for s in others]
    # inches: per ratio unit, row labels, right margin (series tick labels), title, x labels
    unit, label_w, right_w, head, foot = 0.8, 1.9, 0.3, 0.55, 0.3
    width, height = unit * sum(ratios) + label_w + right_w, 1.0 * len(rows) + head + foot
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    grid = fig.add_gridspec(
        len(rows),
        len(ratios),
        width_ratios=ratios,
        left=label_w / width,
        right=1 - right_w / width,
        top=1 - head / height,
        bottom=foot / height,
        wspace=0.08,
        hspace=0.3,
    )
    for r, (kind, _clip) in enumerate(rows):
        labels = clips["frame_labels"][r]
        video_id = int(clips["video_id"][r])
        clip_index = int(clips["clip_index"][r])
        col = 0
        for spec in videos:
            t = spec.frames
            shown = np.linspace(0, t - 1, frames_per_camera).round().astype(int)
            frames = clips[spec.name][r].reshape(t, spec.channels, *spec.shape[1:])
            for j, f in enumerate(shown):
                ax = fig.add_subplot(grid[r, col + j])
                img = frames[f].transpose(1, 2, 0)
                ax.imshow(
                    img[..., 0] if spec.channels == 1 else img,
                    cmap="gray",
                    vmin=0,
                    vmax=255 if spec.dtype == "uint8" else 1,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                lab = labels[min(f * n_lab // t, n_lab - 1)]
                for side in ax.spines.values():
                    side.set_color("red" if lab else "0.6")
                    side.set_linewidth(2.5 if lab else 0.5)
                if r == 0:
                    ax.set_title(f"{spec.name} f{f}", fontsize=7, pad=2)
                if col == 0 and j == 0:
                    first = clip_index * n_lab
                    note = _segment_note(meta, video_id, first, first + n_lab, kind)
                    text = _DESCRIPTIONS.get(kind, kind)
                    ax.set_ylabel(
                        "\n".join(
                            filter(None, [text, note, f"video {video_id} clip {clip_index}"])
                        ),
                        fontsize=7,
                        rotation=0,
                        ha="right",
                        va="center",
                        labelpad=4,
                        color="black" if kind == "normal" else "darkred",
                    )
            col += frames_per_camera + 1
        for spec in others:
            ax = fig.add_subplot(grid[r, col])
            _draw_other(ax, spec, clips, r, labels, meta, reader)
            if r == 0:
                ax.set_title(f"{spec.name} ({_KIND_TITLES[spec.kind]})", fontsize=7, pad=2)
            if r == len(rows) - 1:
                ax.set_xlabel(_KIND_XLABELS[spec.kind], fontsize=6, labelpad=1)
            col += 1
    legend = "red frame / bar / shading = labelled anomalous"
    if meta.get("generator") == "edgevae-synth":
        legend += (
            "; audio: dashed cyan = pitch each tracked object should make (from motion)"
            "; motion: object positions, z solid, y dashed, x dotted"
        )
    fig.suptitle(
        f"{Path(reader.path).name}: {split} split, a normal clip and one clip per anomaly type\n"
        f"{legend}",
        fontsize=8,
        y=0.997,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    try:
        with atomic_path(out) as tmp:
            _write_small_png(buf.getvalue(), tmp)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the contact sheet to '{out}': {exc.strerror or exc}; choose a writable "
            "--plot path."
        ) from None
    return out


def _write_small_png(png: bytes, path: Path) -> None:
    """Save with 33 levels per channel and a 256-colour palette, without dithering.

    The camera thumbnails are mostly sensor noise, which a PNG cannot compress; rounding to
    multiples of 8 (white stays 255) looks the same and makes the file about 3x smaller than the
    RGBA original.
    """
    from PIL import Image

    levels = [min(255, (v + 4) // 8 * 8) for v in range(256)]
    with Image.open(io.BytesIO(png)) as img:
        small = img.convert("RGB").point(levels * 3)
        small.quantize(colors=256, dither=Image.Dither.NONE).save(path, format="PNG", optimize=True)


def _draw_other(
    ax: Any,
    spec: ModalitySpec,
    clips: dict[str, np.ndarray],
    r: int,
    labels: np.ndarray,
    meta: dict[str, Any],
    reader: DatasetReader,
) -> None:
    x = np.asarray(clips[spec.name][r], np.float32)
    n_lab = len(labels)
    ax.tick_params(labelsize=6, length=2, pad=1)
    if spec.kind is ModalityKind.spectrogram:
        img = x[0]  # (mels, frames)
        ax.imshow(img, origin="lower", aspect="auto", cmap="magma")
        per = img.shape[1] / n_lab
        for i, lab in enumerate(labels):
            if lab:
                ax.axvspan(i * per - 0.5, (i + 1) * per - 0.5, ymin=0.93, ymax=1.0, color="red")
        _pitch_overlay(ax, clips, r, img.shape, meta)
        ax.set_xlim(-0.5, img.shape[1] - 0.5)
        ax.set_ylim(-0.5, img.shape[0] - 0.5)
        return
    if spec.kind is ModalityKind.series:
        ax.yaxis.tick_right()  # keep tick labels off the panel to the left
        steps = x.shape[0]
        channels = meta.get("motion_channels") if spec.name == "motion" else None
        if channels and len(channels) == x.shape[1]:
            colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
            for c, name in enumerate(channels):
                slot, field = name.split("_", 1)
                if field not in ("x", "y", "z") or not np.any(x[:, c]):
                    continue
                style = {"x": ":", "y": "--", "z": "-"}[field]
                k = int(slot[3:])
                ax.plot(x[:, c], style, color=colors[k % 4], lw=1)
            ax.set_ylim(-0.3, 1.3)
        else:
            ax.plot(x[:, : min(x.shape[1], 12)], lw=0.8)
        per = steps / n_lab
        for i, lab in enumerate(labels):
            if lab:
                ax.axvspan(i * per - 0.5, (i + 1) * per - 0.5, color="red", alpha=0.15, lw=0)
        ax.set_xlim(-0.5, steps - 0.5)
        return
    ax.bar(np.arange(x.size), x.ravel(), color="tab:red" if labels.any() else "tab:blue")


def _pitch_overlay(
    ax: Any, clips: dict[str, np.ndarray], r: int, shape: tuple[int, ...], meta: dict[str, Any]
) -> None:
    """Dashed: the tone each tracked object should make given its motion reading (synth only)."""
    if meta.get("generator") != "edgevae-synth" or "motion" not in clips:
        return
    from edgevae.data.synth.audio import mel_bin, pitch_hz
    from edgevae.data.synth.config import SynthConfig

    config = SynthConfig.from_dict(meta["config"])
    motion = np.asarray(clips["motion"][r], np.float64)  # (steps, 6 * slots)
    steps = motion.shape[0]
    at = (np.arange(steps) + 0.5) * shape[1] / steps - 0.5  # motion step -> mel frame
    for slot in range(config.max_objects):
        z = motion[:, 6 * slot + 2]
        if not np.any(motion[:, 6 * slot : 6 * slot + 6]):
            continue
        ax.plot(at, mel_bin(pitch_hz(np.clip(z, 0, 1)), config), "--", color="cyan", lw=1.2)
