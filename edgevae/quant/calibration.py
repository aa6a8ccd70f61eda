"""Calibration data from a dataset through a recipe, and the portable activation-range cache.

A recipe (``calibration/recipes/NAME.toml``, see ``calibration/README.md``) fixes how many clips
are drawn, from which split, with which seed, and how they are spread over mask patterns::

    samples = 512           # clips drawn (``--samples`` overrides)
    min_samples = 256       # fewer is refused unless --force
    seed = 0
    split = "train"         # normal clips only
    all_present_share = 0.5 # this share keeps every modality; the rest cycle through the other
                            # mask-pattern classes (each single modality missing, only one present)
    batch_size = 16         # rows per calibration forward pass

Every drawn clip keeps its own missing modalities (the dataset mask) on top of its pattern, is
normalised with the statistics stored in the export (the one preprocessing source of truth) and
absent modalities are zeroed, exactly as the runtime feeds them.

The range cache (``EXPORT_DIR/calibration/<graph>.<method>.ranges.json``) holds ONNX Runtime's
``TensorsData`` (portable JSON, no TensorRT calibration table) with a ``key`` that says what it
was computed from: the FP32 graph's SHA-256, the method, the recipe, the sample count, the dataset
index and the onnxruntime version. A matching key is reused without running calibration; anything
else recalibrates and replaces it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.artifacts import write_json_atomic
from edgevae._util.choices import closest
from edgevae.errors import CalibrationError, ConfigError, ShapeError
from edgevae.modalities import ModalitySet

RECIPE_DIR = Path(__file__).resolve().parents[2] / "calibration" / "recipes"
CACHE_FORMAT = "edgevae-calibration-ranges"
CACHE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """A calibration recipe (see the module docstring for the fields).

    Raises:
        ConfigError: an invalid field, naming it.
    """

    name: str
    samples: int = 512
    min_samples: int = 256
    seed: int = 0
    split: str = "train"
    all_present_share: float = 0.5
    batch_size: int = 16
    description: str = ""

    def __post_init__(self) -> None:
        for key in ("samples", "min_samples", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"recipe '{self.name}': {key} must be a positive integer.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"recipe '{self.name}': seed must be a non-negative integer.")
        if self.split not in ("train", "val", "test"):
            raise ConfigError(f"recipe '{self.name}': split must be 'train', 'val' or 'test'.")
        share = self.all_present_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(f"recipe '{self.name}': all_present_share must be in [0, 1].")
        if self.min_samples > self.samples:
            raise ConfigError(
                f"recipe '{self.name}': min_samples ({self.min_samples}) exceeds samples "
                f"({self.samples})."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_recipes() -> list[str]:
    """Names of the recipes in ``calibration/recipes/``."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml")) if RECIPE_DIR.is_dir() else []


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe by name (``calibration/recipes/NAME.toml``) or by path to a TOML file.

    Raises:
        ConfigError: unknown name (closest suggested), unreadable TOML, unknown or invalid keys.
    """
    value = str(name_or_path)
    looks_like_path = value.endswith(".toml") or os.sep in value or "/" in value
    path = Path(value) if looks_like_path else RECIPE_DIR / f"{value}.toml"
    if not path.is_file():
        if looks_like_path:
            raise ConfigError(
                f"recipe file '{path}' does not exist; pass a recipe name "
                f"({', '.join(available_recipes())}) or an existing .toml path."
            )
        names = available_recipes()
        if not names:
            raise ConfigError(
                f"no built-in calibration recipes here ({RECIPE_DIR} is missing: they ship with "
                "the source checkout); pass --recipe PATH.toml (see calibration/README.md)."
            )
        hint = closest(value, names)
        did = f" Did you mean '{hint}'?" if hint else ""
        raise ConfigError(
            f"unknown calibration recipe '{value}'.{did} Available: {', '.join(names)} "
            f"(in {RECIPE_DIR}), or pass a path to a .toml recipe."
        )
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        from edgevae._util.lazy import require

        tomllib = require("tomli")
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read recipe '{path}': {exc}; fix the TOML syntax.") from None
    known = [f.name for f in fields(Recipe)]
    for key in raw:
        if key not in known:
            hint = closest(key, known)
            did = f" Did you mean '{hint}'?" if hint else ""
            raise ConfigError(f"recipe '{path}': unknown key '{key}'.{did}")
    raw.setdefault("name", path.stem)
    return Recipe(**raw)


@dataclass
class CalibrationSet:
    """Normalised calibration feeds of the modality graphs and what they cover.

    Args:
        feeds: ``{input name: (N, ...) float32}`` (every modality and ``mask``).
        patterns: mask-pattern class of each row.
        summary: counts per pattern class and per present modality, clip indices used.
    """

    feeds: dict[str, np.ndarray]
    patterns: list[str]
    summary: dict[str, Any]

    def __len__(self) -> int:
        return len(self.patterns)

    def batches(self, batch_size: int, feeds: Mapping[str, np.ndarray] | None = None) -> list:
        """The feeds cut into ``batch_size``-row dicts (the calibrator's inputs)."""
        feeds = self.feeds if feeds is None else feeds
        n = len(next(iter(feeds.values())))
        return [
            {k: np.ascontiguousarray(v[s : s + batch_size]) for k, v in feeds.items()}
            for s in range(0, n, batch_size)
        ]


def check_data_modalities(model: ModalitySet, data: ModalitySet, data_dir: Path) -> None:
    """Raise ShapeError (one line) unless the dataset's modalities are the model's, in order."""
    try:
        model.check_compatible(
            data,
            what=f"calibration data '{data_dir}'",
            fix="Pass --data with the dataset the model was trained on (or one with the same "
            "modalities and shapes).",
        )
    except ShapeError as exc:
        raise ShapeError(str(exc)) from None


def assign_patterns(n: int, names: Sequence[str], share: float) -> list[tuple[str, np.ndarray]]:
    """The mask-pattern class of each of ``n`` rows: ``share`` of them all-present, the rest
    cycling through the other classes (each single modality missing, then only one present)."""
    from edgevae.export.validate import mask_patterns

    classes = mask_patterns(names)
    full, others = classes[0], classes[1:]
    n_full = n if not others else round(share * n)
    rows = [full] * n_full
    rows += [others[i % len(others)] for i in range(n - n_full)]
    return rows


def sample_calibration(
    data_dir: str | os.PathLike[str],
    modalities: ModalitySet,
    normalization: Mapping[str, Any],
    recipe: Recipe,
    samples: int | None = None,
    *,
    force: bool = False,
) -> CalibrationSet:
    """Draw and normalise calibration clips from ``data_dir`` as ``recipe`` says.

    Args:
        data_dir: an edgevae dataset.
        modalities: the model's modalities (from the export manifest).
        normalization: the model's normalisation statistics (from the export manifest).
        recipe: the recipe.
        samples: override of ``recipe.samples``.
        force: accept fewer samples than ``recipe.min_samples``.

    Returns:
        The :class:`CalibrationSet`.

    Raises:
        DatasetError: a missing or corrupt dataset.
        ShapeError: dataset modalities or shapes that do not match the model.
        CalibrationError: a missing split, too few samples (without ``force``), or a modality
            that is never present.
    """
    from edgevae.data.format import open_dataset
    from edgevae.data.transforms import Normalizer

    data_dir = Path(data_dir)
    reader = open_dataset(data_dir, verify="size")
    check_data_modalities(modalities, reader.modalities, data_dir)
    if recipe.split not in reader.splits or len(reader.split(recipe.split)) == 0:
        raise CalibrationError(
            f"dataset '{data_dir}' has no clips in the '{recipe.split}' split the recipe "
            f"'{recipe.name}' draws from (it has: {', '.join(reader.splits)}); use a recipe with "
            "another split or another --data."
        )
    split = reader.split(recipe.split)
    wanted = recipe.samples if samples is None else samples
    n = min(wanted, len(split))
    if n < recipe.min_samples and not force:
        got = f"only {n} calibration samples" + (
            f" (the '{recipe.split}' split has {len(split)} clips)" if n < wanted else ""
        )
        raise CalibrationError(
            f"{got}, fewer than the minimum of {recipe.min_samples} of recipe '{recipe.name}'; "
            f"pass --samples >= {recipe.min_samples} (with enough data), choose a recipe with a "
            "lower minimum (e.g. --recipe quick), or --force to accept an unreliable calibration."
        )
    rng = np.random.default_rng(recipe.seed)
    indices = np.sort(rng.choice(len(split), size=n, replace=False))
    raw = split.read(indices, [*modalities.names, "mask"])
    rows = assign_patterns(n, modalities.names, recipe.all_present_share)
    order = rng.permutation(n)  # patterns spread over clips at random, not by storage order
    pattern_mask = np.stack([rows[i][1] for i in order]).astype(np.float32)
    mask = (raw["mask"].astype(np.float32) > 0).astype(np.float32) * pattern_mask
    raw["mask"] = mask
    feeds = Normalizer(modalities, dict(normalization)).batch(raw)
    names = [rows[i][0] for i in order]
    present = {m: int(mask[:, i].sum()) for i, m in enumerate(modalities.names)}
    never = [m for m, c in present.items() if c == 0]
    if never:
        raise CalibrationError(
            f"modality {never[0]} is present in none of the {n} calibration samples (the "
            "dataset marks it missing); calibrate with data where it is present."
        )
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    summary = {
        "data": str(data_dir),
        "index_sha256": _index_sha(data_dir),
        "split": recipe.split,
        "samples": n,
        "requested": wanted,
        "forced": bool(n < recipe.min_samples),
        "patterns": counts,
        "present_per_modality": present,
    }
    return CalibrationSet(dict(feeds), names, summary)


def _index_sha(data_dir: Path) -> str:
    from edgevae._util.artifacts import sha256_file

    return sha256_file(data_dir / "index.json")


# -- range cache -----------------------------------------------------------------------------------
def cache_path(export_dir: Path, graph: str, method: str) -> Path:
    """Where the activation ranges of ``graph`` for ``method`` are cached."""
    return export_dir / "calibration" / f"{graph}.{method}.ranges.json"


def read_cache(path: Path, key: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The cached ORT ranges payload when ``path`` holds one for exactly ``key``.

    Returns:
        ``(payload or None, status)``; status is ``hit``, ``missing``, ``unreadable`` or
        ``stale (<first differing key field>)``.
    """
    if not path.is_file():
        return None, "missing"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, "unreadable"
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or "ranges" not in doc:
        return None, "unreadable"
    old = doc.get("key") or {}
    differing = [k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k)]
    if differing:
        return None, f"stale ({differing[0]} changed)"
    return doc["ranges"], "hit"


def write_cache(path: Path, key: Mapping[str, Any], ranges: Mapping[str, Any]) -> Path:
    """Write the ranges payload with its key (atomically)."""
    doc = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": dict(key), "ranges": ranges}
    return write_json_atomic(path, doc)


def ranges_to_payload(tensors_data: Any) -> dict[str, Any]:
    """ORT ``TensorsData`` -> a JSON-ready dict (the format ``load_tensors_data`` reads)."""
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    payload = tensors_data.to_dict()
    payload["smooth_quant"] = False
    return json.loads(json.dumps(payload, cls=CalibrationCacheEncoder))


def payload_tensor_names(payload: Mapping[str, Any]) -> list[str]:
    """Tensor names a ranges payload covers."""
    return sorted((payload.get("data") or {}).keys())


def matching_nodes(names: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Node names matched (``re.search``) by any of ``patterns``."""
    compiled = [re.compile(p) for p in patterns]
    return [n for n in names if any(c.search(n) for c in compiled)]
