"""``pipeline``: the main job on the built-in data, from synthetic clips to a benchmarked artifact.

Stages, each resumable (:mod:`edgevae.pipeline.stages`; a stage whose outputs exist and whose
configuration and upstream are unchanged is skipped)::

    data      edgevae data synth           -> RUN/data
    train     edgevae train                -> RUN/train          (resumes an interrupted run)
    eval      edgevae eval                 -> RUN/eval
    export    edgevae export               -> RUN/export/{analyze,encode,decode}.onnx
    quantize  edgevae quantize fp16, int8 for TensorRT, int8 for the CPU, each with its gate
    bench     edgevae bench                -> RUN/bench/bench.{json,md,png}
    report                                 -> RUN/report.md

TensorRT engines and CUDA paths are benchmarked only where TensorRT / a GPU exist; the report says
which were skipped and why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevae.errors import CheckpointError, ConfigError
from edgevae.pipeline.config import PipelineConfig
from edgevae.pipeline.stages import Stage, StageResult, run_stages


@dataclass
class Hooks:
    """Callbacks the CLI fills in; every one is optional.

    Args:
        stage_start: ``(name, description)`` before a stage runs.
        stage_done: the :class:`StageResult` after it ran or was skipped.
        line: one informational line.
        train_progress: the trainer's ``ProgressEvent`` callback.
        eval_progress: ``(stage, done, total)`` of the evaluation.
        bench_progress: ``(event, info)`` of the benchmark driver.
    """

    stage_start: Callable[[str, str], None] | None = None
    stage_done: Callable[[StageResult], None] | None = None
    line: Callable[[str], None] | None = None
    train_progress: Callable[[Any], None] | None = None
    eval_progress: Callable[[str, int, int], None] | None = None
    bench_progress: Callable[[str, dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class Layout:
    """Where every stage writes inside the pipeline's run directory."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def report(self) -> Path:
        return self.root / "report.md"


# (precision, target, artifact suffix): the quantized artifacts the pipeline makes.
QUANTIZED = (("fp16", "trt", "fp16"), ("int8", "trt", "int8.trt"), ("int8", "cpu", "int8.cpu"))


def pipeline(
    out: str | os.PathLike[str],
    config: PipelineConfig | None = None,
    hooks: Hooks | None = None,
    *,
    force: bool = False,
) -> Path:
    """Run the main job into ``out`` and return the path of ``report.md``.

    Args:
        out: run directory (created; an earlier run there is resumed stage by stage).
        config: what to run (default :class:`PipelineConfig`, the 15-minute default run).
        hooks: progress callbacks.
        force: rerun every stage even when its outputs are current.

    Raises:
        OutputExistsError: ``out`` is a file or a non-pipeline, non-empty directory.
        EdgeVAEError: whatever a stage raises (it names the stage's problem); the stages before
            it keep their outputs, so the next call resumes there.
    """
    cfg = (config or PipelineConfig()).resolved()
    hooks = hooks or Hooks()
    lay = Layout(Path(out))
    _check_out(lay.root)
    lay.root.mkdir(parents=True, exist_ok=True)
    (lay.root / "pipeline.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    stages = [
        Stage("data", _data_config(cfg), lambda: _data(lay, cfg)),
        Stage("train", _train_config(cfg), lambda: _train(lay, cfg, hooks), after=("data",)),
        Stage(
            "eval",
            {"imputation_clips": cfg.imputation_clips, "device": cfg.device},
            lambda: _eval(lay, cfg, hooks),
            after=("data", "train"),
        ),
        Stage("export", {"graphs": "all"}, lambda: _export(lay, hooks), after=("train",)),
        Stage(
            "quantize",
            {"samples": cfg.calibration_samples, "artifacts": [q[2] for q in QUANTIZED]},
            lambda: _quantize(lay, cfg, hooks),
            after=("data", "export"),
        ),
        Stage(
            "bench",
            {
                "seconds": cfg.bench_seconds,
                "batches": list(cfg.batches or ()),
                "threads": cfg.threads,
            },
            lambda: _bench(lay, cfg, hooks),
            after=("data", "train", "quantize"),
        ),
        Stage(
            "report",
            {"version": 1},
            lambda: [_report(lay, cfg)],
            after=("eval", "quantize", "bench"),
        ),
    ]
    descriptions = {
        "data": f"synthesise the built-in benchmark ({cfg.data_preset})",
        "train": f"train the {cfg.preset} multimodal VAE (budget {cfg.train_minutes:g} min)",
        "eval": "evaluate: AUROC per anomaly type, camera masking, imputation",
        "export": "export analyze/encode/decode to ONNX with parity checks",
        "quantize": "quantize: FP16, INT8 for TensorRT, INT8 for the CPU, each gated",
        "bench": "benchmark PyTorch vs ONNX Runtime FP32/FP16/INT8",
        "report": "write report.md",
    }

    def start(stage: Stage) -> None:
        if hooks.stage_start:
            hooks.stage_start(stage.name, descriptions[stage.name])

    run_stages(lay.root, stages, force=force, on_start=start, on_done=hooks.stage_done)
    return lay.report


# -- stages ----------------------------------------------------------------------------------------
def _check_out(root: Path) -> None:
    from edgevae.errors import OutputExistsError

    if root.is_file():
        raise OutputExistsError(f"--out '{root}' is a file; choose a directory.")
    if root.is_dir() and any(root.iterdir()) and not (root / "pipeline.json").is_file():
        raise OutputExistsError(
            f"--out '{root}' is a non-empty directory that is not a pipeline run; choose an empty "
            "or new directory."
        )


def _data_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {"preset": cfg.data_preset, "seed": cfg.seed}


def _data(lay: Layout, cfg: PipelineConfig) -> list[Path]:
    from edgevae.data.synth import preset_config, synthesize

    assert cfg.data_preset is not None
    synthesize(lay.data, preset_config(cfg.data_preset, seed=cfg.seed), overwrite=True, workers=0)
    return [lay.data / "index.json"]


# Learning rate and schedule of the pipeline's training: 3x the `edgevae train` default, decayed
# by a cosine over the epoch cap (34 epochs ~ the 9-minute budget on a 2-core CPU); both measured
# better for the nano preset at a fixed CPU budget (benchmarks/baselines/results/ablation.md).
PIPELINE_LR = 3e-3
PIPELINE_SCHEDULE = "cosine"
# The largest standardised score part, not their sum: 0.752 -> 0.782 frame AUROC on the same model.
PIPELINE_SCORE_COMBINE = "max"


def _train_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "preset": cfg.preset,
        "lr": PIPELINE_LR,
        "schedule": PIPELINE_SCHEDULE,
        "score_combine": PIPELINE_SCORE_COMBINE,
        "epochs": cfg.epochs,
        "minutes": cfg.train_minutes,
        "seed": cfg.seed,
        "device": cfg.device,
    }


def _train(lay: Layout, cfg: PipelineConfig, hooks: Hooks) -> list[Path]:
    from edgevae.errors import ShapeError
    from edgevae.model.config import ModelConfig
    from edgevae.train import TrainConfig, train

    model_cfg = ModelConfig.from_preset(cfg.preset, "mvae")
    train_cfg = TrainConfig(
        epochs=cfg.epochs or 1,
        max_minutes=cfg.train_minutes,
        seed=cfg.seed,
        device=cfg.device,
        lr=PIPELINE_LR,
        schedule=PIPELINE_SCHEDULE,
        score_combine=PIPELINE_SCORE_COMBINE,
    )
    if (lay.train / "model.json").is_file():
        # an interrupted training: continue it from its last checkpoint when it is the same run
        try:
            train(
                lay.data,
                lay.train,
                model_cfg,
                train_cfg,
                resume=True,
                progress=hooks.train_progress,
            )
            return [lay.train / "model.safetensors", lay.train / "model.json"]
        except (ConfigError, CheckpointError, ShapeError) as exc:
            _say(hooks, f"not resuming the earlier training ({exc}); training from scratch")
    train(lay.data, lay.train, model_cfg, train_cfg, overwrite=True, progress=hooks.train_progress)
    return [lay.train / "model.safetensors", lay.train / "model.json"]


def _eval(lay: Layout, cfg: PipelineConfig, hooks: Hooks) -> list[Path]:
    from edgevae.evaluate.run import EvalConfig, evaluate

    ecfg = EvalConfig(
        imputation_clips=cfg.imputation_clips or 256, overwrite=True, device=cfg.device
    )
    out = evaluate(lay.train, lay.data, ecfg, progress=hooks.eval_progress, out_dir=lay.eval)
    return [out / "metrics.json"]


def _export(lay: Layout, hooks: Hooks) -> list[Path]:
    from edgevae.export import export

    return export(lay.train, lay.export, progress=hooks.line, overwrite=True)


def _quantize(lay: Layout, cfg: PipelineConfig, hooks: Hooks) -> list[Path]:
    from edgevae.pipeline.quantize_step import quantize_all

    return quantize_all(lay.export, lay.data, cfg, say=hooks.line)


def bench_artifacts(lay: Layout) -> list[Path]:
    """What the pipeline benchmarks: the run (PyTorch) and every analyze ONNX that exists."""
    arts = [lay.train, lay.export / "analyze.onnx"]
    arts += [
        lay.export / f"analyze.{suffix}.onnx"
        for _, target, suffix in QUANTIZED
        if target == "cpu" or suffix == "fp16"
    ]
    return [a for a in arts if a.exists()]


def _bench(lay: Layout, cfg: PipelineConfig, hooks: Hooks) -> list[Path]:
    from edgevae._util.artifacts import write_bytes_atomic
    from edgevae.bench.driver import BenchConfig, benchmark
    from edgevae.bench.plot import plot_latency
    from edgevae.bench.report import to_markdown, write_json

    bcfg = BenchConfig(
        backends=("torch", "ort"),
        batches=tuple(cfg.batches or (1,)),
        duration_s=cfg.bench_seconds or 1.0,
        warmup_s=min(2.0, cfg.bench_seconds or 1.0),
        min_iters=50 if cfg.quick else 200,
        threads=cfg.threads,
        data=str(lay.data),
        accuracy_samples=64 if cfg.quick else 256,
        idle_s=0.0,
        time_limit_s=60.0 if cfg.quick else 240.0,
        matmul_peak=not cfg.quick,
    )
    result = benchmark(
        [str(a) for a in bench_artifacts(lay)],
        bcfg,
        progress=hooks.bench_progress,
        command="edgevae pipeline (bench stage)",
    )
    lay.bench.mkdir(parents=True, exist_ok=True)
    doc = result.doc
    paths = [
        write_json(lay.bench / "bench.json", doc),
        write_bytes_atomic(lay.bench / "bench.md", to_markdown(doc).encode()),
        plot_latency(doc, lay.bench / "latency.png"),
    ]
    return paths


def _report(lay: Layout, cfg: PipelineConfig) -> Path:
    from edgevae.pipeline.report import write_report

    return write_report(lay, cfg)


def _say(hooks: Hooks, text: str) -> None:
    if hooks.line:
        hooks.line(text)
