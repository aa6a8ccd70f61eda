"""The edgevae dataset format: ``index.json`` plus memory-mapped ``.npy`` shards per split.

Layout::

    DIR/index.json                       written last; its presence means "complete"
    DIR/<split>/shard-00000/<modality>.npy   (n, *shape) in the spec's storage dtype
    DIR/<split>/shard-00000/mask.npy         (n, M) uint8, 1 = modality present (spec order)
    DIR/<split>/shard-00000/frame_labels.npy (n, L) uint8 anomaly-type id per frame, 0 = normal
    DIR/<split>/shard-00000/video_id.npy     (n,) int32
    DIR/<split>/shard-00000/clip_index.npy   (n,) int32, position of the clip within its video

``index.json`` holds the modality specs, anomaly type names (id = position), per-split sizes and
per-type anomalous frame counts, every shard file's size and SHA-256, normalisation statistics
computed on the train split, the seed and generator info. A new dataset is written into a hidden
``.NAME.partial-*`` sibling and renamed into place when complete, so an interrupted writer never
leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.artifacts import sha256_file, write_json_atomic
from edgevae._version import __version__
from edgevae.data.transforms import compute_statistics
from edgevae.errors import DatasetError, OutputExistsError, ShapeError
from edgevae.modalities import ModalitySet

FORMAT = "edgevae-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META_FIELDS = ("mask", "frame_labels", "video_id", "clip_index")


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(
            f"output directory '{out}' is not empty; pass --overwrite to replace it or choose "
            "another --out."
        )


class DatasetWriter:
    """Write (or append to) a dataset, shard by shard, with bounded memory.

    Args:
        out: dataset directory.
        modalities: the modality specs (mask column order).
        anomaly_types: names of label ids; id 0 must be ``"normal"``.
        label_frames: frames per clip in ``frame_labels`` (L).
        meta: extra JSON-ready fields stored in ``index.json`` (seed, generator, config, ...).
        shard_clips: clips per shard; a shard is flushed when full.
        overwrite: replace a non-empty ``out``.
        append: add clips to an existing dataset at ``out`` (same modalities required).

    Use as a context manager; :meth:`close` finalises the index. On an exception nothing under
    the final name changes.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        modalities: ModalitySet,
        *,
        anomaly_types: Sequence[str] = ("normal",),
        label_frames: int = 1,
        meta: Mapping[str, Any] | None = None,
        shard_clips: int = 256,
        overwrite: bool = False,
        append: bool = False,
    ) -> None:
        self.out = Path(out)
        self.modalities = modalities
        self.anomaly_types = list(anomaly_types)
        if not self.anomaly_types or self.anomaly_types[0] != "normal":
            raise DatasetError("anomaly_types must start with 'normal' (label id 0).")
        self.label_frames = int(label_frames)
        self.meta = dict(meta or {})
        self.shard_clips = int(shard_clips)
        self._buffers: dict[str, list[dict[str, np.ndarray]]] = {}
        self._buffered: dict[str, int] = {}
        self._closed = False
        if append:
            existing = open_dataset(self.out, verify="size")
            existing.modalities.check_compatible(
                modalities, "appended", "Append only data with the same modalities."
            )
            if existing.label_frames != self.label_frames:
                raise ShapeError(
                    f"appended clips have {self.label_frames} label frames, the dataset has "
                    f"{existing.label_frames}; use the same --clip-frames."
                )
            self.anomaly_types = existing.anomaly_types
            self._index = existing.index
            self.meta = {**existing.index.get("meta", {}), **self.meta}
            self.root = self.out
            self._tmp_root: Path | None = None
        else:
            _check_out_dir(self.out, overwrite)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._tmp_root = Path(
                tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent)
            )
            self.root = self._tmp_root
            self._index = {"splits": {}}

    # -- writing ---------------------------------------------------------------------------------
    def add(
        self,
        split: str,
        arrays: Mapping[str, np.ndarray],
        *,
        mask: np.ndarray | None = None,
        frame_labels: np.ndarray | None = None,
        video_id: np.ndarray | int = 0,
        clip_index: np.ndarray | None = None,
    ) -> None:
        """Add ``n`` clips to ``split``. ``arrays[name]`` has shape (n, *spec.shape).

        Missing defaults: mask all present, labels all normal, clip_index 0..n-1.
        """
        if split not in SPLITS:
            raise DatasetError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}.")
        missing = [s.name for s in self.modalities if s.name not in arrays]
        if missing:
            raise ShapeError(f"arrays for modalities {missing} are missing in split '{split}'.")
        n = len(arrays[self.modalities.names[0]])
        batch: dict[str, np.ndarray] = {}
        for spec in self.modalities:
            a = np.asarray(arrays[spec.name])
            if a.shape != (n, *spec.shape):
                raise ShapeError(
                    f"modality '{spec.name}': expected shape (n, {', '.join(map(str, spec.shape))})"
                    f" with n={n}, got {a.shape}."
                )
            batch[spec.name] = a.astype(spec.dtype, copy=False)
        m = len(self.modalities)
        batch["mask"] = (
            np.ones((n, m), np.uint8) if mask is None else np.asarray(mask).astype(np.uint8)
        )
        batch["frame_labels"] = (
            np.zeros((n, self.label_frames), np.uint8)
            if frame_labels is None
            else np.asarray(frame_labels).astype(np.uint8)
        )
        batch["video_id"] = np.broadcast_to(np.asarray(video_id, np.int32), (n,)).copy()
        batch["clip_index"] = (
            np.arange(n, dtype=np.int32) if clip_index is None else np.asarray(clip_index, np.int32)
        )
        if batch["mask"].shape != (n, m):
            raise ShapeError(f"mask must have shape ({n}, {m}), got {batch['mask'].shape}.")
        if batch["frame_labels"].shape != (n, self.label_frames):
            raise ShapeError(
                f"frame_labels must have shape ({n}, {self.label_frames}), "
                f"got {batch['frame_labels'].shape}."
            )
        if batch["frame_labels"].max(initial=0) >= len(self.anomaly_types):
            raise ShapeError(
                f"frame label id {int(batch['frame_labels'].max())} has no anomaly type name "
                f"(known: {self.anomaly_types})."
            )
        self._buffers.setdefault(split, []).append(batch)
        self._buffered[split] = self._buffered.get(split, 0) + n
        while self._buffered[split] >= self.shard_clips:
            self._flush(split, self.shard_clips)

    def _flush(self, split: str, count: int) -> None:
        parts = self._buffers.get(split, [])
        if not parts:
            return
        joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        take = {k: v[:count] for k, v in joined.items()}
        rest = {k: v[count:] for k, v in joined.items()}
        n_rest = len(rest["mask"])
        self._buffers[split] = [rest] if n_rest else []
        self._buffered[split] = n_rest
        self._write_shard(split, take)

    def _write_shard(self, split: str, arrays: dict[str, np.ndarray]) -> None:
        entry = self._index["splits"].setdefault(split, {"shards": []})
        shard_id = len(entry["shards"])
        name = f"shard-{shard_id:05d}"
        final = self.root / split / name
        tmp = self.root / split / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        files = {}
        for key, arr in arrays.items():
            path = tmp / f"{key}.npy"
            np.save(path, np.ascontiguousarray(arr))
            files[key] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        if final.exists():  # an orphan of an interrupted append: not referenced by the index
            shutil.rmtree(final)
        os.replace(tmp, final)
        entry["shards"].append(
            {"dir": f"{split}/{name}", "clips": len(arrays["mask"]), "files": files}
        )

    # -- finalising ------------------------------------------------------------------------------
    def close(self) -> Path:
        """Flush buffers, compute statistics and write ``index.json``; returns the dataset path."""
        if self._closed:
            return self.out
        for split in list(self._buffers):
            while self._buffered.get(split, 0):
                self._flush(split, self.shard_clips)
        self._index.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "edgevae_version": __version__,
                "modalities": self.modalities.to_list(),
                "anomaly_types": self.anomaly_types,
                "label_frames": self.label_frames,
                "meta": self.meta,
            }
        )
        reader = DatasetReader(self.root, self._index)
        for split in self._index["splits"]:
            self._index["splits"][split].update(reader.split(split).summary())
        if "train" in self._index["splits"]:
            self._index["normalization"] = compute_statistics(reader.split("train"))
        elif "normalization" not in self._index:
            raise DatasetError(
                "a dataset needs a 'train' split: standardisation statistics are computed on it."
            )
        write_json_atomic(self.root / "index.json", self._index)
        if self._tmp_root is not None:
            if self.out.exists():
                if self.out.is_dir():
                    shutil.rmtree(self.out)
                else:  # --overwrite onto a file
                    self.out.unlink()
            os.replace(self._tmp_root, self.out)
        self._closed = True
        return self.out

    def abort(self) -> None:
        """Discard everything written (new datasets) and leave ``out`` untouched."""
        self._closed = True
        if self._tmp_root is not None and self._tmp_root.exists():
            shutil.rmtree(self._tmp_root, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()  # a refused close (e.g. Inf in the train split) leaves no partial dir
            raise


def _map_npy(path: Path) -> np.ndarray:
    """Memory-map a ``.npy`` file read-only (what ``np.load(mmap_mode="r")`` does, keeping the
    ``mmap`` object reachable as ``array.base`` so its pages can be released)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # pragma: no cover - numpy writes 1.0 (or 2.0/3.0 for huge headers)
            raise ValueError(f"unsupported .npy format version {version}")
        offset = f.tell()
        if dtype.hasobject:
            raise ValueError("object arrays cannot be memory-mapped")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype=dtype)
        mm = mmap.mmap(f.fileno(), offset + nbytes, access=mmap.ACCESS_READ)
    order = "F" if fortran else "C"
    return np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset, order=order)


def _release(array: np.ndarray) -> None:
    """Drop the pages of a mapped array from the resident set (the page cache keeps them)."""
    mm = array.base
    if isinstance(mm, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def _mapped_resident_bytes() -> int | None:
    """File-backed (+ shared) resident bytes of this process (``/proc/self/statm``), or None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


def _default_open_shards(n_files: int) -> int:
    """Shards to keep mapped: half the open-file limit (a mapping holds a descriptor), 8..1024."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:  # pragma: no cover - unusual configuration
            soft = 65536
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-POSIX
        soft = 1024
    return max(8, min(1024, soft // 2 // max(n_files, 1)))


class SplitReader:
    """Random and sequential access to one split; arrays are memory-mapped, opened lazily.

    Resident memory stays flat however large the split is. Pages read through a mapping stay in
    the process's resident set (RSS) until released, so with ``release_pages`` (the default) the
    reader drops the mapped pages (``madvise(MADV_DONTNEED)``; the OS page cache keeps them, so
    re-reading stays fast) whenever they have grown by ``resident_budget`` bytes since the last
    release (measured from ``/proc/self/statm``; without ``/proc``, after every read). At most
    ``max_open_shards`` shards are mapped at a time (least recently used ones are unmapped; each
    mapped file holds a descriptor; default: half the open-file limit, 8..1024 shards).
    """

    max_open_shards: int | None = None
    release_pages = True
    resident_budget = 64 << 20

    def __init__(self, root: Path, modalities: ModalitySet, name: str, entry: dict[str, Any]):
        self.root = root
        self.modalities = modalities
        self.name = name
        self.shards = entry.get("shards", [])
        self.sizes = np.array([s["clips"] for s in self.shards], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._open: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._resident_mark: int | None = None  # mapped resident bytes after the last release

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started with spawn get a copy: they map the shards themselves
        # instead of receiving the mapped arrays' bytes
        return {**self.__dict__, "_open": OrderedDict()}

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.modalities.names, *META_FIELDS)

    def shard(self, i: int) -> dict[str, np.ndarray]:
        """The memory-mapped arrays of shard ``i`` (read-only)."""
        if i in self._open:
            self._open.move_to_end(i)
            return self._open[i]
        d = self.root / self.shards[i]["dir"]
        try:
            arrays = {k: _map_npy(d / f"{k}.npy") for k in self.fields}
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"cannot read shard '{d}': {exc}. The dataset is corrupt; regenerate it."
            ) from None
        self._open[i] = arrays
        limit = self.max_open_shards or _default_open_shards(len(self.fields))
        while len(self._open) > max(int(limit), 1):
            self._open.popitem(last=False)  # unmapped once no array of it is referenced
        return arrays

    def _release_pages(self, touched: list[np.ndarray]) -> None:
        now = _mapped_resident_bytes()
        if now is None:  # no way to measure: release what this read touched
            for array in touched:
                _release(array)
            return
        if self._resident_mark is None or now < self._resident_mark:
            self._resident_mark = now
        if now - self._resident_mark > self.resident_budget:
            for arrays in self._open.values():
                for array in arrays.values():
                    _release(array)
            self._resident_mark = _mapped_resident_bytes()

    def read(
        self, indices: np.ndarray | Sequence[int], fields: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Copy the clips at ``indices`` (any order) into memory: ``{field: (n, ...)}``."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"clip index out of range for split '{self.name}' ({len(self)} clips)")
        fields = list(fields or self.fields)
        shard_of = np.searchsorted(self.offsets, idx, side="right") - 1
        out: dict[str, np.ndarray] = {}
        touched: list[np.ndarray] = []
        for s in np.unique(shard_of):
            sel = np.nonzero(shard_of == s)[0]
            local = idx[sel] - self.offsets[s]
            arrays = self.shard(int(s))
            for f in fields:
                src = arrays[f]
                if f not in out:
                    out[f] = np.empty((len(idx), *src.shape[1:]), dtype=src.dtype)
                out[f][sel] = src[local]
                touched.append(src)
        if self.release_pages and touched:
            self._release_pages(touched)
        if not idx.size:
            out = {f: np.empty((0,)) for f in fields}
        return out

    def iter_batches(
        self, batch_size: int, fields: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Sequential batches in storage order (memory bounded by ``batch_size``)."""
        for start in range(0, len(self), batch_size):
            yield self.read(np.arange(start, min(start + batch_size, len(self))), fields)

    def summary(self) -> dict[str, Any]:
        """Clip/video counts and anomalous frame counts per type, from the stored labels."""
        counts: dict[int, int] = {}
        videos: set[int] = set()
        for i in range(len(self.shards)):
            a = self.shard(i)
            ids, c = np.unique(np.asarray(a["frame_labels"]), return_counts=True)
            for k, v in zip(ids.tolist(), c.tolist(), strict=True):
                counts[k] = counts.get(k, 0) + v
            videos.update(np.unique(np.asarray(a["video_id"])).tolist())
            _release(a["frame_labels"])
            _release(a["video_id"])
        self._open.clear()
        return {
            "clips": len(self),
            "videos": len(videos),
            "frame_label_counts": {str(k): v for k, v in sorted(counts.items())},
        }


class DatasetReader:
    """A validated dataset on disk. Use :func:`open_dataset` to create one."""

    def __init__(self, path: Path, index: dict[str, Any]):
        self.path = path
        self.index = index
        self.modalities = ModalitySet.from_list(index["modalities"])
        self.anomaly_types: list[str] = list(index["anomaly_types"])
        self.label_frames = int(index["label_frames"])
        self._splits: dict[str, SplitReader] = {}

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self.index["splits"])

    def split(self, name: str) -> SplitReader:
        if name not in self.index["splits"]:
            raise DatasetError(
                f"dataset '{self.path}' has no '{name}' split (it has: {', '.join(self.splits)})."
            )
        if name not in self._splits:
            self._splits[name] = SplitReader(
                self.path, self.modalities, name, self.index["splits"][name]
            )
        return self._splits[name]

    def anomalous_frames(self, split: str) -> dict[str, int]:
        """Anomalous frame count per anomaly type name for ``split`` (normal excluded)."""
        counts = self.index["splits"][split].get("frame_label_counts", {})
        return {self.anomaly_types[int(k)]: v for k, v in counts.items() if int(k) != 0}

    @property
    def normalization(self) -> dict[str, Any]:
        return self.index.get("normalization", {})

    def verify(self, mode: str = "hash") -> None:
        """Check every shard file exists with its recorded size (and SHA-256 if ``mode='hash'``)."""
        for split in self.splits:
            for shard in self.index["splits"][split]["shards"]:
                for key, rec in shard["files"].items():
                    f = self.path / shard["dir"] / f"{key}.npy"
                    if not f.is_file():
                        raise DatasetError(
                            f"shard file '{f}' is missing; the dataset is incomplete, regenerate it"
                        )
                    if f.stat().st_size != rec["bytes"]:
                        raise DatasetError(
                            f"shard file '{f}' has {f.stat().st_size} bytes, index.json says "
                            f"{rec['bytes']}; the file is truncated or replaced, regenerate it."
                        )
                    if mode == "hash" and sha256_file(f) != rec["sha256"]:
                        raise DatasetError(
                            f"shard file '{f}' does not match its SHA-256 in index.json; the "
                            "file is corrupt, regenerate the dataset."
                        )


def open_dataset(path: str | os.PathLike[str], verify: str = "hash") -> DatasetReader:
    """Open and validate a dataset directory.

    Args:
        path: the dataset directory (holding ``index.json``).
        verify: ``"hash"`` checks sizes and SHA-256 of every shard file, ``"size"`` only sizes,
            ``"none"`` nothing.

    Raises:
        DatasetError: missing/partial directory, unreadable index, incompatible format version,
            missing or corrupt shard files. The message names the file and the fix.
    """
    path = Path(path)
    index_path = path / "index.json"
    if not path.is_dir():
        raise DatasetError(
            f"dataset directory '{path}' does not exist; create one with `edgevae data synth "
            f"--out {path}` or `edgevae data ingest`."
        )
    if not index_path.is_file():
        raise DatasetError(
            f"'{index_path}' is missing: '{path}' is not a complete edgevae dataset (an "
            "interrupted write?). Regenerate it."
        )
    try:
        index = json.loads(index_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot parse '{index_path}': {exc}. Regenerate the dataset.") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DatasetError(f"'{index_path}' is not an edgevae dataset index.")
    version = index.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"'{index_path}' has dataset format version {version}, this edgevae "
            f"({__version__}) reads version {FORMAT_VERSION}; regenerate the dataset with this "
            "version."
        )
    for key in ("modalities", "anomaly_types", "label_frames", "splits"):
        if key not in index:
            raise DatasetError(f"'{index_path}' lacks '{key}'; the index is damaged, regenerate.")
    reader = DatasetReader(path, index)
    if verify != "none":
        reader.verify(verify)
    return reader
