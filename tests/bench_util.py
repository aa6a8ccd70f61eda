"""A tiny two-modality model with the analyze-graph I/O convention, exported to ONNX with a dynamic
batch axis, for runner and benchmark tests (seconds, not minutes)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from edgevae.modalities import ModalitySet, ModalitySpec
from edgevae.runtime.base import TensorInfo

MODALITIES = ModalitySet(
    [
        ModalitySpec("cam0", "video", (2, 8, 8), dtype="uint8"),
        ModalitySpec("motion", "series", (4, 3)),
    ]
)
F32 = np.dtype("float32")
INPUTS = [
    TensorInfo("cam0", ("batch", 2, 8, 8), F32),
    TensorInfo("motion", ("batch", 4, 3), F32),
    TensorInfo("mask", ("batch", 2), F32),
]
OUTPUTS = [
    TensorInfo("z_mu", ("batch", 4), F32),
    TensorInfo("recon_cam0", ("batch", 2, 8, 8), F32),
    TensorInfo("score", ("batch",), F32),
]


def tiny_module(seed: int = 0, score_scale: float = 1.0):
    """(cam0, motion, mask) -> (z_mu, recon_cam0, score); conv + linear so MACs are counted.
    ``score_scale != 1`` makes a deliberately wrong score (for accuracy-check tests)."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.lin = nn.Linear(4 * 8 * 8 + 12, 4)
            self.dec = nn.Linear(4, 2 * 8 * 8)

        def forward(self, cam0, motion, mask):
            h = torch.relu(self.conv(cam0 * mask[:, :1, None, None]))  # (B, 4, 8, 8)
            feat = torch.cat([h.flatten(1), (motion * mask[:, 1:, None]).flatten(1)], dim=1)
            z = self.lin(feat)  # (B, 4)
            recon = self.dec(z).reshape(-1, 2, 8, 8)
            score = ((recon - cam0) ** 2).flatten(1).mean(1) * score_scale  # (B,)
            return z, recon, score

    torch.manual_seed(seed)
    return Tiny().eval()


def export_tiny(
    path: Path,
    seed: int = 0,
    manifest: bool = True,
    dynamic: bool = True,
    score_scale: float = 1.0,
) -> Path:
    """Export the tiny module to ``path`` (dynamic ``batch`` unless ``dynamic=False``: then the
    batch is fixed at 2); write a sidecar manifest with the modality specs and identity
    normalisation, as the export stage records them."""
    import torch

    module = tiny_module(seed, score_scale)
    args = (torch.rand(2, 2, 8, 8), torch.randn(2, 4, 3), torch.ones(2, 2))
    names_in = [i.name for i in INPUTS]
    names_out = [o.name for o in OUTPUTS]
    axes = {n: {0: "batch"} for n in names_in + names_out} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(
            module, args, str(path), input_names=names_in, output_names=names_out,
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    if manifest:
        details = {
            "modalities": MODALITIES.to_list(),
            "normalization": {
                "cam0": {"scale": 1 / 255},
                "motion": {"shape": [1, 3], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
            },
        }
        side = path.with_name(path.name + ".manifest.json")
        side.write_text(json.dumps({"kind": "onnx", "details": details}))
    return path


def make_run_dir(root: Path) -> tuple[Path, Path]:
    """An (untrained) run directory and its dataset, written with the trainer's own checkpoint
    functions in well under a second; returns ``(run_dir, dataset_dir)``."""
    from edgevae.data.format import open_dataset
    from edgevae.modalities import ModalitySet
    from edgevae.model.vae import build_model
    from edgevae.train.checkpoint import build_meta, save_weights, write_meta
    from tests.train_util import TINY_SPECS, make_tiny_dataset, tiny_model_config

    data = make_tiny_dataset(root / "data")
    normalization = open_dataset(data, verify="none").normalization
    modalities = ModalitySet(TINY_SPECS)
    config = tiny_model_config()
    model = build_model(modalities, config).eval()
    run = root / "run"
    run.mkdir()
    save_weights(run / "model.safetensors", model)
    meta = build_meta(
        model_config=config, modalities=modalities, normalization=normalization,
        train_config={}, history=[], data={"path": str(data)}, status="done",
    )  # fmt: skip
    write_meta(run, meta)
    return run, data


def export_run(run: Path, out: Path) -> Path:
    """Export a run's AnalyzeGraph to ``out`` (dynamic batch), as `edgevae export` will."""
    import torch

    from edgevae.model.analyze import AnalyzeGraph
    from edgevae.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)
    graph = AnalyzeGraph(ckpt.model, ckpt.score_stats).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph, graph.example_inputs(2), str(out), input_names=graph.input_names,
            output_names=graph.output_names, dynamic_axes=graph.dynamic_axes, opset_version=17,
            dynamo=False,
        )  # fmt: skip
    return out
