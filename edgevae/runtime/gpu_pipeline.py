"""The analyze pipeline on a CUDA GPU: PyTorch encoders/decoders + edgevae's three CUDA kernels.

One analysis step, all on the GPU, all on PyTorch's current stream::

    uint8 camera frames --preprocess kernel--> video inputs (B, T*C, H, W) per camera
    inputs --model.experts (PyTorch)--> expert_mu, expert_logvar (B, M, D)
    experts, effective mask --poe_fusion kernel--> z_mu, z_logvar, KL to the prior, cross-modal KL
    z_mu --model.decode (PyTorch)--> reconstructions
    inputs, reconstructions, KLs --anomaly_score kernel--> score (B,), score_parts (B, M + 2)

Outputs are named like ``analyze.onnx`` (DESIGN §6): ``z_mu``, ``z_logvar``, ``recon_<m>``,
``score``, ``score_parts``. :class:`EagerAnalyzePipeline` (:func:`eager_analyze`) is the same
step with eager PyTorch ops (``preprocess_eager`` + ``AnalyzeGraph``): the parity reference and
the benchmark baseline. :meth:`GpuAnalyzePipeline.capture` records the whole kernel step as ONE
CUDA graph for a fixed batch and frame shape; replaying it copies new inputs into the static
buffers and launches the graph.

Non-video modalities are fed already normalised (``edgevae.data.transforms.Normalizer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from edgevae.errors import ConfigError, ShapeError
from edgevae.kernels import torch_ops
from edgevae.kernels.eager import preprocess_eager
from edgevae.modalities import ModalityKind, ModalitySpec
from edgevae.model.analyze import AnalyzeGraph
from edgevae.model.scoring import ScoreStats

Frames = Tensor | Mapping[str, Tensor]


def _video_specs(model: Any) -> list[ModalitySpec]:
    return [s for s in model.modalities if s.kind is ModalityKind.video]


def _output_names(model: Any) -> list[str]:
    names = list(model.modalities.names)
    return ["z_mu", "z_logvar", *(f"recon_{n}" for n in names), "score", "score_parts"]


def _camera_frames(video: list[ModalitySpec], frames: Frames) -> list[Tensor] | Tensor:
    """Check ``frames``: stacked (B, n_cams, T, H, W, C) tensor or {camera: (B, T, H, W, C)}."""
    if isinstance(frames, Tensor):
        if frames.ndim != 6 or frames.shape[1] != len(video):
            raise ShapeError(
                f"frames must be uint8 (B, {len(video)}, T, H, W, C) for cameras "
                f"{[s.name for s in video]}, got {tuple(frames.shape)}."
            )
        if len({(s.shape, s.channels) for s in video}) > 1:
            raise ShapeError(
                "the cameras have different model shapes; pass frames as {camera name: "
                "(B, T, H, W, C)} instead of one stacked tensor."
            )
        return frames
    missing = [s.name for s in video if s.name not in frames]
    if missing:
        raise ShapeError(f"frames lack cameras {missing}; give uint8 (B, T, H, W, C) for each.")
    return [frames[s.name] for s in video]


def _check_frames_t(spec: ModalitySpec, t: int) -> None:
    if t != spec.frames:
        raise ShapeError(f"camera '{spec.name}' takes {spec.frames} frames per clip, got {t}.")


def _assemble(
    model: Any, video_inputs: dict[str, Tensor], others: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    inputs: dict[str, Tensor] = {}
    for spec in model.modalities:
        if spec.kind is ModalityKind.video:
            inputs[spec.name] = video_inputs[spec.name]
        elif spec.name in others:
            inputs[spec.name] = others[spec.name]
        else:
            raise ShapeError(
                f"modality '{spec.name}' is missing; feed it normalised (zeros where absent, "
                "with 0 in its mask column)."
            )
    return inputs


class EagerAnalyzePipeline:
    """The analysis step with eager PyTorch ops only (any device): the parity reference and the
    benchmark baseline (``preprocess_eager`` per camera + :class:`AnalyzeGraph`).

    Args:
        model: an edgevae model (``build_model``); put in eval mode.
        score_stats: score standardisation statistics (identity if None).
        bgr: colour frames are B, G, R.
    """

    def __init__(self, model: Any, score_stats: ScoreStats | None = None, *, bgr: bool = False):
        self.model = model.eval()
        self.video = _video_specs(model)
        self.bgr = bgr
        device = next(model.parameters()).device
        self.graph = AnalyzeGraph(model, score_stats).to(device)

    @torch.no_grad()
    def run(self, frames: Frames, others: Mapping[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """One analysis step.

        Args:
            frames: uint8 frames, stacked (B, n_cams, T, H, W, C) or {camera: (B, T, H, W, C)}.
            others: normalised non-video modalities by name.
            mask: (B, M) float, 1 = present.

        Returns:
            ``{z_mu, z_logvar, recon_<m>..., score, score_parts}``.

        Raises:
            ShapeError: missing or mis-shaped inputs.
        """
        cams = _camera_frames(self.video, frames)
        video_inputs: dict[str, Tensor] = {}
        for k, spec in enumerate(self.video):
            f = cams[:, k : k + 1] if isinstance(cams, Tensor) else cams[k].unsqueeze(1)
            _check_frames_t(spec, f.shape[2])
            x = preprocess_eager(f, spec.shape[1:], spec.channels, bgr=self.bgr)  # (B, 1, TC, H, W)
            video_inputs[spec.name] = x[:, 0]
        inputs = _assemble(self.model, video_inputs, others)
        outs = self.graph(*(inputs[n] for n in self.model.modalities.names), mask)
        return dict(zip(_output_names(self.model), outs, strict=True))


def eager_analyze(
    model: Any,
    score_stats: ScoreStats | None,
    frames: Frames,
    others: Mapping[str, Tensor],
    mask: Tensor,
    *,
    bgr: bool = False,
) -> dict[str, Tensor]:
    """One-shot :meth:`EagerAnalyzePipeline.run` (see there for arguments and errors)."""
    return EagerAnalyzePipeline(model, score_stats, bgr=bgr).run(frames, others, mask)


class GpuAnalyzePipeline:
    """The analysis step with the CUDA kernels (see the module docstring).

    Args:
        model: a variational edgevae model with per-modality experts (``mvae`` or
            ``unimodal``), on a CUDA device, in eval mode.
        score_stats: score standardisation statistics (identity if None).
        bgr: colour camera frames are B, G, R (OpenCV).
        backend: kernel launch backend, ``"cuda-python"`` (needed for CUDA graphs) or ``"pycuda"``.
        ops: the kernel functions (``preprocess``, ``poe_fusion``, ``anomaly_score`` with the
            signatures of :mod:`edgevae.kernels.torch_ops`, the default). Tests pass CPU
            stand-ins built on the kernels' host math; then the model may be on the CPU.

    Raises:
        ConfigError: a model without experts (``concat-ae``), or not on a CUDA device.
    """

    def __init__(
        self,
        model: Any,
        score_stats: ScoreStats | None = None,
        *,
        bgr: bool = False,
        backend: str = "cuda-python",
        ops: Any = None,
    ) -> None:
        if not hasattr(model, "experts") or not getattr(model, "variational", True):
            raise ConfigError(
                f"the GPU kernel pipeline fuses per-modality experts; model kind "
                f"'{model.config.kind}' has none. Use eager_analyze for it."
            )
        device = next(model.parameters()).device
        self.ops = torch_ops if ops is None else ops
        if device.type != "cuda" and self.ops is torch_ops:
            raise ConfigError(
                f"the GPU kernel pipeline needs the model on a CUDA device, it is on {device}; "
                "move it with model.cuda(), or use eager_analyze on the CPU."
            )
        self.model = model.eval()
        self.device = device
        self.names = list(model.modalities.names)
        self.video = _video_specs(model)
        self.bgr = bgr
        self.backend = backend
        stats = score_stats or ScoreStats.identity(self.names)
        if list(stats.names) != ScoreStats.identity(self.names).names:
            raise ShapeError(
                f"score statistics are for parts {stats.names}; refit them for this model."
            )
        self.score_mean, self.score_std, self.score_weight = stats.tensors(device)
        self.score_combine = stats.combine

    def _video_inputs(self, frames: Frames) -> dict[str, Tensor]:
        cams = _camera_frames(self.video, frames)
        if isinstance(cams, Tensor):
            spec = self.video[0]
            for s in self.video:
                _check_frames_t(s, cams.shape[2])
            x = self.ops.preprocess(
                cams, spec.shape[1:], spec.channels, bgr=self.bgr, backend=self.backend
            )  # (B, n_cams, T*C, H, W): views per camera, no copy
            return {s.name: x[:, k] for k, s in enumerate(self.video)}
        out = {}
        for spec, f in zip(self.video, cams, strict=True):
            _check_frames_t(spec, f.shape[1] if f.ndim == 5 else -1)
            x = self.ops.preprocess(
                [f], spec.shape[1:], spec.channels, bgr=self.bgr, backend=self.backend
            )
            out[spec.name] = x[:, 0]
        return out

    @torch.no_grad()
    def run(self, frames: Frames, others: Mapping[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """One analysis step on CUDA tensors (see :func:`eager_analyze` for the arguments).

        Returns:
            ``{z_mu, z_logvar, recon_<m>..., score, score_parts}`` as CUDA tensors.

        Raises:
            ShapeError: missing or mis-shaped inputs, CPU tensors.
        """
        inputs = _assemble(self.model, self._video_inputs(frames), others)
        self.model.check_inputs(inputs, mask)
        eff = self.model.effective_mask(mask)  # inactive modalities never fused or scored
        expert_mu, expert_logvar = self.model.experts(inputs)  # (B, M, D) each
        fused = self.ops.poe_fusion(expert_mu, expert_logvar, eff, backend=self.backend)
        recon = self.model.decode(fused.z_mu)
        scored = self.ops.anomaly_score(
            [inputs[n] for n in self.names], [recon[n] for n in self.names], eff,
            fused.kl_prior, fused.cross_kl, self.score_mean, self.score_std, self.score_weight,
            self.score_combine, backend=self.backend,
        )  # fmt: skip
        recons = [recon[n] for n in self.names]
        outs = (fused.z_mu, fused.z_logvar, *recons, scored.score, scored.parts)
        return dict(zip(_output_names(self.model), outs, strict=True))

    def capture(
        self, frames: Frames, others: Mapping[str, Tensor], mask: Tensor, warmup: int = 2
    ) -> CapturedAnalyze:
        """Record :meth:`run` for these inputs' shapes as one CUDA graph.

        The example inputs become the graph's static input buffers (copies of them). Warm-up
        runs happen on a side stream first (they load the kernel modules, outside capture).

        Raises:
            ConfigError: the pycuda backend (it cannot launch on PyTorch's capture stream).
        """
        if self.backend != "cuda-python":
            raise ConfigError("CUDA-graph capture needs backend='cuda-python'.")
        static_frames: Frames = (
            frames.clone()
            if isinstance(frames, Tensor)
            else {k: v.clone() for k, v in frames.items()}
        )
        static_others = {k: v.clone() for k, v in others.items()}
        static_mask = mask.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.run(static_frames, static_others, static_mask)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.run(static_frames, static_others, static_mask)
        return CapturedAnalyze(graph, static_frames, static_others, static_mask, outputs)


class CapturedAnalyze:
    """A captured analysis step: copy inputs into the static buffers and replay the graph."""

    def __init__(
        self,
        graph: torch.cuda.CUDAGraph,
        frames: Frames,
        others: dict[str, Tensor],
        mask: Tensor,
        outputs: dict[str, Tensor],
    ) -> None:
        self.graph = graph
        self.frames = frames
        self.others = others
        self.mask = mask
        self.outputs = outputs

    def replay(
        self, frames: Frames, others: Mapping[str, Tensor], mask: Tensor
    ) -> dict[str, Tensor]:
        """Run the graph on new inputs of the captured shapes.

        Returns:
            The static output tensors (overwritten by the next replay; clone to keep them).

        Raises:
            ShapeError: inputs whose shapes differ from the captured ones.
        """
        pairs: list[tuple[str, Tensor, Tensor]] = [("mask", self.mask, mask)]
        if isinstance(self.frames, Tensor):
            if not isinstance(frames, Tensor):
                raise ShapeError("this graph was captured with stacked frames; pass a tensor.")
            pairs.append(("frames", self.frames, frames))
        else:
            if isinstance(frames, Tensor):
                raise ShapeError("this graph was captured with per-camera frames; pass a dict.")
            pairs += [(k, v, frames[k]) for k, v in self.frames.items()]
        pairs += [(k, v, others[k]) for k, v in self.others.items()]
        for name, static, new in pairs:
            if new.shape != static.shape or new.dtype != static.dtype:
                raise ShapeError(
                    f"'{name}' has shape {tuple(new.shape)} {new.dtype}; the graph was captured "
                    f"for {tuple(static.shape)} {static.dtype}: capture another graph."
                )
            static.copy_(new, non_blocking=True)
        self.graph.replay()
        return self.outputs
