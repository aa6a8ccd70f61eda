"""The Python API: load a trained run and use it on raw NumPy arrays.

Example:
    >>> import edgevae
    >>> model = edgevae.load("runs/nano")                       # doctest: +SKIP
    >>> scores, parts, names = model.score({"cam0": frames, ...})  # doctest: +SKIP
    >>> cam1 = model.impute(arrays, missing=["cam1"])["cam1"]   # doctest: +SKIP

Arrays are raw, as stored in a dataset: video ``uint8`` frames (or floats in 0..255),
spectrograms/series/vectors in their own units. The stored :class:`Normalizer` is applied inside,
and reconstructions come back denormalised. Every array has a leading batch axis ``(B, *shape)``.

Masks: ``mask`` is ``(B, M)`` or ``(M,)`` with columns in ``model.modalities`` order, 1 = present.
A modality whose column is 0 for every row may be left out of ``arrays``. A row with **no
modality present** is defined: its posterior is the prior N(0, I) (``z_mu = 0``,
``z_logvar = 0``), its reconstructions are the decoding of ``z = 0``, and its score has zero
reconstruction parts, so it is the standardised KL/cross-modal parts of the prior only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevae._util.choices import check_choice, closest
from edgevae.errors import CheckpointError, ConfigError, NumericalError, ShapeError
from edgevae.modalities import ModalitySet

if TYPE_CHECKING:
    import torch

    from edgevae.train.checkpoint import Checkpoint


class Model:
    """A trained model with NumPy in / NumPy out methods. Create it with :func:`load`.

    Attributes:
        modalities: the modality specs (mask column order).
        part_names: names of the score parts (``score_parts`` columns).
        module: the underlying ``torch.nn.Module`` (eval mode; normalised inputs).
        run_dir: the run directory it was loaded from.
    """

    def __init__(self, checkpoint: Checkpoint, device: torch.device, batch_size: int = 256):
        self._ckpt = checkpoint
        self.module = checkpoint.model
        self.modalities: ModalitySet = checkpoint.modalities
        self.run_dir: Path = checkpoint.path
        self.meta: dict[str, Any] = checkpoint.meta
        self.device = device
        self.batch_size = batch_size
        from edgevae.model.scoring import part_names

        self.part_names: list[str] = part_names(self.modalities.names)

    def __repr__(self) -> str:
        return f"edgevae.Model('{self.run_dir}', modalities={list(self.modalities.names)})"

    # -- public methods ----------------------------------------------------------------------------
    def encode(
        self, arrays: Mapping[str, np.ndarray], mask: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Posterior of the shared latent and each modality's expert.

        Args:
            arrays: ``{modality: (B, *shape)}`` raw arrays.
            mask: ``(B, M)`` or ``(M,)``, 1 = present (default: all present).

        Returns:
            ``{"z_mu": (B, D), "z_logvar": (B, D), "expert_mu": (B, M, D),
            "expert_logvar": (B, M, D)}`` float32.

        Raises:
            ShapeError: unknown/missing modality, wrong shape or dtype, bad mask.
            NumericalError: NaN/Inf in a present modality.
        """

        def run(inputs: dict, m: Any) -> dict:
            z_mu, z_logvar, e_mu, e_logvar = self.module.encode(inputs, m)
            return {
                "z_mu": z_mu,
                "z_logvar": z_logvar,
                "expert_mu": e_mu,
                "expert_logvar": e_logvar,
            }

        return self._batched(arrays, mask, run)

    def reconstruct(
        self, arrays: Mapping[str, np.ndarray], mask: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Deterministic reconstruction (``z = z_mu``) of every modality, in raw units.

        Returns:
            ``{modality: (B, *shape)}`` float32, denormalised (video in 0..255, clipped to the
            range of a ``uint8`` modality, not rounded). Absent modalities are imputed.

        Raises:
            ShapeError, NumericalError: as :meth:`encode`.
        """
        out = self._batched(arrays, mask, lambda inputs, m: dict(self.module(inputs, m).recon))
        return {name: self._denormalize(name, out[name]) for name in self.modalities.names}

    def impute(
        self,
        arrays: Mapping[str, np.ndarray],
        missing: Sequence[str],
        mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Reconstruct the ``missing`` modalities from the others.

        Args:
            arrays: raw arrays of the observed modalities (the missing ones may be left out).
            missing: names of the modalities to impute (their mask columns are forced to 0).
            mask: optional mask for the observed modalities.

        Returns:
            ``{name: (B, *shape)}`` for each name in ``missing``, float32 in raw units.

        Raises:
            ConfigError: an unknown or empty ``missing`` list.
            ShapeError, NumericalError: as :meth:`encode`.
        """
        if isinstance(missing, str):
            missing = [missing]
        if not missing:
            raise ConfigError("impute needs at least one modality name in 'missing'.")
        for name in missing:
            check_choice(name, self.modalities.names, "modality to impute")
        n = self._batch_size_of(arrays)
        full = self._mask(mask, n)
        for name in missing:
            full[:, self.modalities.index(name)] = 0.0
        observed = {k: v for k, v in arrays.items() if k not in missing}
        recon = self.reconstruct(observed, full)
        return {name: recon[name] for name in missing}

    def score(
        self, arrays: Mapping[str, np.ndarray], mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Anomaly score per sample and its standardised parts (higher = more anomalous).

        Returns:
            ``(score (B,), parts (B, P), part_names)`` with parts ``recon_<m>`` for each modality
            (0 where absent), ``kl_prior`` and ``cross_modal``.

        Raises:
            CheckpointError: the run has no score statistics (training did not finish).
            ShapeError, NumericalError: as :meth:`encode`.
        """

        from edgevae.model.scoring import standardize
        from edgevae.train.score_fit import score_batch

        stats = self._ckpt.score_stats
        if stats is None:
            raise CheckpointError(
                f"run '{self.run_dir}' has no score statistics (its training did not finish); "
                f"finish it with `edgevae train --resume --out {self.run_dir} --data ...`."
            )
        mean, std, weight = stats.tensors(self.device)

        def run(inputs: dict, m: torch.Tensor) -> dict:
            raw, eff_mask, _ = score_batch(self.module, inputs, m)
            score, parts = standardize(raw, eff_mask, mean, std, weight, stats.combine)
            return {"score": score, "parts": parts}

        out = self._batched(arrays, mask, run)
        return out["score"], out["parts"], list(self.part_names)

    # -- input checking and batching ---------------------------------------------------------------
    def _batch_size_of(self, arrays: Mapping[str, np.ndarray]) -> int:
        if not isinstance(arrays, Mapping) or not arrays:
            raise ShapeError(
                "arrays must be a non-empty dict {modality: array} over "
                f"{list(self.modalities.names)}."
            )
        for name in arrays:
            if name not in self.modalities.names:
                hint = closest(str(name), self.modalities.names)
                raise ShapeError(
                    f"unknown modality '{name}' in arrays"
                    + (f" (did you mean '{hint}'?)" if hint else "")
                    + f"; the model takes {list(self.modalities.names)}."
                )
        sizes = {k: int(np.shape(v)[0]) if np.ndim(v) else 0 for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"arrays differ in batch size {sizes}; give every modality B rows.")
        n = next(iter(sizes.values()))
        if n < 1:
            raise ShapeError("arrays have no rows; pass (B, *shape) arrays with B >= 1.")
        return n

    def _mask(self, mask: np.ndarray | None, n: int) -> np.ndarray:
        m = len(self.modalities)
        if mask is None:
            return np.ones((n, m), np.float32)
        mask = np.asarray(mask)
        if mask.shape == (m,):
            mask = np.broadcast_to(mask, (n, m))
        if mask.shape != (n, m):
            raise ShapeError(
                f"mask must have shape ({n}, {m}) or ({m},) (columns "
                f"{list(self.modalities.names)}), got {mask.shape}."
            )
        if not np.issubdtype(mask.dtype, np.number) and mask.dtype != bool:
            raise ShapeError(f"mask must be numeric or bool, got dtype {mask.dtype}.")
        mask = mask.astype(np.float32)
        if not np.isin(mask, (0.0, 1.0)).all():
            raise ShapeError("mask values must be 0 (absent) or 1 (present).")
        return np.ascontiguousarray(mask)

    def _prepare(
        self, arrays: Mapping[str, np.ndarray], mask: np.ndarray | None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Validate raw arrays + mask and normalise them: ({name: float32 (B, ...)}, (B, M))."""
        n = self._batch_size_of(arrays)
        mask = self._mask(mask, n)
        normalizer = self._ckpt.normalizer
        inputs = {}
        for i, spec in enumerate(self.modalities):
            present = mask[:, i] > 0
            if spec.name not in arrays:
                if present.any():
                    raise ShapeError(
                        f"modality '{spec.name}' is missing from arrays but marked present; "
                        f"pass it, set mask column {i} to 0, or use "
                        f"impute(..., missing=['{spec.name}'])."
                    )
                inputs[spec.name] = np.zeros((n, *spec.shape), np.float32)
                continue
            a = np.asarray(arrays[spec.name])
            if a.shape != (n, *spec.shape):
                raise ShapeError(
                    f"modality '{spec.name}' has shape {a.shape}, the model expects "
                    f"(B, {', '.join(map(str, spec.shape))}); add a batch axis with x[None] for "
                    "one sample."
                )
            if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
                raise ShapeError(
                    f"modality '{spec.name}' has dtype {a.dtype}; pass {spec.dtype} (or any real "
                    "numeric dtype) in raw units."
                )
            if np.issubdtype(a.dtype, np.floating):
                bad = ~np.isfinite(a.reshape(n, -1)).all(axis=1) & present
                if bad.any():
                    raise NumericalError(
                        f"modality '{spec.name}' holds NaN/Inf in {int(bad.sum())} sample(s) "
                        "marked present; clean them or set their mask to 0."
                    )
                a = np.where(present.reshape((-1,) + (1,) * len(spec.shape)), a, 0)
            inputs[spec.name] = normalizer.numpy(spec.name, a, mask[:, i])
        return inputs, mask

    def _batched(
        self,
        arrays: Mapping[str, np.ndarray],
        mask: np.ndarray | None,
        fn: Callable[[dict, Any], dict],
    ) -> dict[str, np.ndarray]:
        """Run ``fn(inputs, mask) -> {key: tensor}`` over chunks; concatenated numpy outputs."""
        import torch

        inputs, mask = self._prepare(arrays, mask)
        n = len(mask)
        chunks: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                sl = slice(start, start + self.batch_size)
                x = {k: torch.from_numpy(v[sl]).to(self.device) for k, v in inputs.items()}
                m = torch.from_numpy(mask[sl]).to(self.device)
                for key, value in fn(x, m).items():
                    chunks.setdefault(key, []).append(value.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in chunks.items()}

    def _denormalize(self, name: str, y: np.ndarray) -> np.ndarray:
        raw = self._ckpt.normalizer.denormalize(name, y)
        if self.modalities[name].dtype == "uint8":
            raw = np.clip(raw, 0.0, 255.0)
        return raw.astype(np.float32, copy=False)


def load(run_dir: str | os.PathLike[str], *, device: str = "cpu", batch_size: int = 256) -> Model:
    """Load a trained run for inference on raw NumPy arrays.

    Args:
        run_dir: a run directory written by ``edgevae train``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        batch_size: samples per forward pass (bounds memory for large inputs).

    Returns:
        A :class:`Model` with ``encode``, ``reconstruct``, ``impute`` and ``score``.

    Raises:
        CheckpointError: missing, corrupt or incompatible run directory (never unpickles:
            JSON + safetensors only).
        ConfigError: an unavailable device or a bad batch size.
    """
    from edgevae.train.checkpoint import load_checkpoint
    from edgevae.train.config import resolve_device

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    torch_device = resolve_device(device)
    return Model(load_checkpoint(run_dir, torch_device), torch_device, batch_size)
