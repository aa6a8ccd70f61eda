"""What the engine builder needs from an export directory (DESIGN §6 file names).

=========  ======================  ==========================  =============================
precision  analyze                 encode                      decode
=========  ======================  ==========================  =============================
fp32       ``analyze.onnx``        ``encode.onnx``             ``decode.onnx``
fp16       ``analyze.fp16.onnx``   ``encode.fp16.onnx``        ``decode.fp16.onnx``
int8       ``analyze.int8.trt.onnx`` ``encode.int8.trt.onnx``  ``decode.int8.trt.onnx``
=========  ======================  ==========================  =============================

Split and plugin modes also need the anomaly-score statistics (fitted on normal validation data)
that ``analyze.onnx`` holds as constants. They are read, in this order, from
``score_stats.json`` (``ScoreStats.to_dict()``), or ``details.score_stats`` /
``config.score_stats`` of ``analyze.onnx.manifest.json``, or the ``score_stats`` metadata entry of
``analyze.onnx``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError, ExportError
from edgevae.model.score_rules import COMBINE_RULES

_SUFFIX = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8.trt.onnx"}
_MAKE = {
    "fp32": "edgevae export RUN --out {dir}",
    "fp16": "edgevae quantize {dir} --precision fp16",
    "int8": "edgevae quantize {dir} --precision int8 --target trt",
}


def check_export_dir(export_dir: str | os.PathLike[str]) -> Path:
    """Return the export directory as a Path.

    Raises:
        ConfigError: when it does not exist or is not a directory.
    """
    path = Path(export_dir)
    if not path.is_dir():
        raise ConfigError(
            f"export directory {path} does not exist; create it with `edgevae export RUN --out "
            f"{path}`."
        )
    return path


def onnx_for(export_dir: Path, graph: str, precision: str) -> Path:
    """The precision-specific ONNX of ``graph`` (analyze/encode/decode).

    Raises:
        ExportError: when it is missing, naming the command that makes it.
    """
    path = export_dir / f"{graph}{_SUFFIX[precision]}"
    if path.is_file():
        return path
    hint = _MAKE[precision].format(dir=export_dir)
    cpu = export_dir / f"{graph}.int8.cpu.onnx"
    extra = (
        f" ({cpu.name} is the ONNX Runtime CPU artifact and cannot be used for TensorRT)"
        if precision == "int8" and cpu.is_file()
        else ""
    )
    raise ExportError(f"{export_dir} has no {path.name}{extra}; make it with `{hint}`.")


def load_score_stats(export_dir: Path) -> dict[str, Any]:
    """The anomaly-score statistics ``{"names", "mean", "std", "weight", "combine"}`` of an export.

    ``combine`` (``sum`` or ``max``, :mod:`edgevae.model.scoring`) is ``sum`` for exports made
    before the rule was stored.

    Raises:
        ExportError: when no source holds them (split and plugin modes need them).
    """
    candidates: list[tuple[str, Any]] = []
    stats_file = export_dir / "score_stats.json"
    if stats_file.is_file():
        candidates.append((stats_file.name, _read_json(stats_file)))
    manifest = export_dir / "analyze.onnx.manifest.json"
    if manifest.is_file():
        m = _read_json(manifest) or {}
        for section in ("details", "config"):
            if isinstance(m.get(section), dict) and "score_stats" in m[section]:
                candidates.append((f"{manifest.name} {section}", m[section]["score_stats"]))
    analyze = export_dir / "analyze.onnx"
    if analyze.is_file() and not candidates:
        meta = _onnx_metadata(analyze).get("score_stats")
        if meta:
            candidates.append(("analyze.onnx metadata", json.loads(meta)))
    for source, stats in candidates:
        if _valid_stats(stats):
            out: dict[str, Any] = {k: list(stats[k]) for k in ("names", "mean", "std", "weight")}
            out["combine"] = stats.get("combine", "sum")
            return out
        raise ExportError(
            f"score statistics in {export_dir / source} are malformed (need equal-length "
            "names/mean/std/weight lists and a combine rule of "
            f"{' or '.join(COMBINE_RULES)}); re-run `edgevae export`."
        )
    raise ExportError(
        f"{export_dir} holds no anomaly-score statistics (score_stats.json or score_stats in "
        "analyze.onnx.manifest.json), which --mode split and --mode plugin need; re-run "
        "`edgevae export`, or use --mode native."
    )


def modality_names(encode_inputs: list[str]) -> list[str]:
    """Modality names in mask-column order: the encode graph's inputs other than ``mask``.

    Raises:
        ExportError: when there is no ``mask`` input.
    """
    if "mask" not in encode_inputs:
        raise ExportError(
            f"the encode graph has inputs {encode_inputs} but no 'mask'; re-export it with "
            "`edgevae export`."
        )
    return [n for n in encode_inputs if n not in ("mask", "eps")]


def check_stats_match(stats: dict[str, list], modalities: list[str]) -> None:
    """Raise ExportError unless the stats' part names fit the modalities (M recon parts + 2)."""
    expected = [f"recon_{m}" for m in modalities] + ["kl_prior", "cross_modal"]
    if list(stats["names"]) != expected:
        raise ExportError(
            f"score statistics are for parts {stats['names']} but the graphs have modalities "
            f"{modalities} (parts {expected}); the export directory mixes two models: re-export."
        )


def _valid_stats(stats: Any) -> bool:
    if not isinstance(stats, dict) or not all(
        k in stats for k in ("names", "mean", "std", "weight")
    ):
        return False
    n = len(stats["names"])
    return (
        n > 2
        and all(len(stats[k]) == n for k in ("mean", "std", "weight"))
        and stats.get("combine", "sum") in COMBINE_RULES
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is not valid JSON ({exc}); re-run `edgevae export`.") from None


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ExportError(f"{path} is not a readable ONNX model ({exc}); re-export it.") from None
    return {p.key: p.value for p in model.metadata_props}
