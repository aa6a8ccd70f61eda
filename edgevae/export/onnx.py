"""``export``: a training run -> parity-checked ``analyze`` / ``encode`` / ``decode`` ONNX graphs.

Each graph is exported with the TorchScript-based ``torch.onnx.export(dynamo=False)``. Measured
with torch 2.13: it still works (with a deprecation warning, silenced here), takes about 6 s for
the nano analyze graph, gives contract names and a symbolic ``batch`` axis directly, and folds
constants; the dynamo exporter needs ``dynamic_shapes`` per input and renames nothing better.

Then, for every graph, all in memory before anything is written:

1. set every graph input's and output's declared shape to the contract (``batch`` or the fixed
   batch on axis 0, static sizes elsewhere): the TorchScript exporter invents symbolic names for
   the sizes it cannot infer and even reuses ``batch`` for them (measured: ``recon_motion`` was
   declared ``[batch, batch, 3]``), which misleads shape-reading tools (TensorRT profiles,
   converters, the runtime's input checks);
2. normalise the model so the same checkpoint gives byte-identical files: no doc strings,
   ``producer_name`` ``edgevae`` and edgevae's version (not torch's), sorted metadata;
3. ``onnx.checker.check_model(full_check=True)`` (strict shape inference: the declared shapes
   must agree with what the graph computes);
4. parity against PyTorch through ONNX Runtime over every mask-pattern class
   (:mod:`edgevae.export.validate`), with the rows of :mod:`edgevae.export.tolerances`.

Only when every graph passed are the files written (atomically), each with a sidecar manifest
holding what the runtime, the quantizer, the engine builder and the benchmarks need: modality
specs, normalisation and score statistics, tensor names/shapes, the parity report. A failed check
raises and leaves the output directory as it was.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevae._util.artifacts import (
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_manifest,
)
from edgevae._version import __version__
from edgevae.errors import CheckpointError, ExportError, OutputExistsError
from edgevae.export.config import ExportConfig
from edgevae.export.validate import check_parity, graph_io, parity_cases, require_parity
from edgevae.parity import ParityReport
from edgevae.runtime.base import TensorInfo

ProgressFn = Callable[[str], None]
MODULES = ("numpy", "torch", "onnx", "onnxruntime")
SCORE_STATS_FILE = "score_stats.json"


@dataclass
class _Built:
    graph: str
    data: bytes
    report: ParityReport
    seconds: float
    io: dict[str, list[dict[str, Any]]]
    timings: dict[str, float]


def _ignore(message: str) -> None:
    del message


def artifact_name(graph: str) -> str:
    """File name of a graph's FP32 export (``analyze.onnx``)."""
    return f"{graph}.onnx"


def export(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ExportConfig | None = None,
    progress: ProgressFn | None = None,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Export a training run to ONNX graphs, check them, and write them with manifests.

    Args:
        run_dir: a finished training run (``model.safetensors`` + ``model.json``).
        out_dir: directory for ``<graph>.onnx`` + ``<graph>.onnx.manifest.json`` and
            ``score_stats.json``.
        config: graphs, opset, batch (default :class:`ExportConfig`).
        progress: called with one line per stage.
        overwrite: replace existing exports in ``out_dir`` (quantized artifacts derived from a
            replaced graph that differs are removed: they would be stale).

    Returns:
        The written ONNX paths, in ``config.graphs`` order.

    Raises:
        CheckpointError: missing, corrupt or incompatible run, or one whose training did not
            finish (no score statistics).
        OutputExistsError: an export already in ``out_dir`` without ``overwrite``.
        ExportError: torch could not export or ``onnx.checker`` rejected a graph.
        ParityError: ONNX Runtime's outputs differ from PyTorch's beyond the tolerance table.
    """
    from edgevae.train.checkpoint import MODEL_JSON, WEIGHTS, load_checkpoint

    config = config or ExportConfig()
    progress = progress or _ignore
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    progress(f"load: {run_dir}")
    ckpt = load_checkpoint(run_dir, "cpu")
    if ckpt.score_stats is None:
        raise CheckpointError(
            f"run '{run_dir}' has no score statistics (its training did not finish); finish it "
            f"with `edgevae train --resume --out {run_dir} --data ...` before exporting."
        )
    _check_out_dir(out_dir, config, overwrite)
    inputs = {
        WEIGHTS: sha256_file(run_dir / WEIGHTS),
        MODEL_JSON: sha256_file(run_dir / MODEL_JSON),
    }
    built = [_build(graph, ckpt, config, progress) for graph in config.graphs]

    progress(f"write: {len(built)} graph(s) and manifests to {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for b in built:
        path = out_dir / artifact_name(b.graph)
        old_sha = sha256_file(path) if path.is_file() else None
        write_bytes_atomic(path, b.data)
        new_sha = sha256_file(path)
        if old_sha is not None and old_sha != new_sha:
            _remove_stale(out_dir, b.graph, new_sha)
        write_manifest(
            path,
            kind="onnx",
            config=config.to_dict(),
            inputs=inputs,
            details=_details(b, ckpt, config, run_dir),
            checks={"onnx_checker": "passed (full_check)", "parity": b.report.to_dict()},
            modules=MODULES,
        )
        paths.append(path)
    write_json_atomic(out_dir / SCORE_STATS_FILE, ckpt.score_stats.to_dict())
    return paths


def _check_out_dir(out_dir: Path, config: ExportConfig, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"--out '{out_dir}' is a file; choose a directory.")
    existing = [g for g in config.graphs if (out_dir / artifact_name(g)).exists()]
    if existing and not overwrite:
        names = ", ".join(artifact_name(g) for g in existing)
        raise OutputExistsError(
            f"'{out_dir}' already holds {names}; pass --overwrite to replace them or choose "
            "another --out."
        )


def _build(graph: str, ckpt: Any, config: ExportConfig, progress: ProgressFn) -> _Built:
    """Export one graph to normalised bytes, check it and prove parity (nothing written)."""
    from edgevae.runtime.ort_runner import OrtRunner
    from edgevae.runtime.torch_runner import TorchRunner

    start = time.perf_counter()
    module = wrapper(graph, ckpt)
    latent_dim = int(ckpt.model.latent_dim)
    ins, outs = graph_io(graph, ckpt.modalities, latent_dim)
    progress(f"{graph}: torch.onnx.export (opset {config.opset}, batch {config.batch})")
    data = to_onnx_bytes(module, config, metadata=_metadata(graph, ckpt), contract=(ins, outs))
    t_export = time.perf_counter()
    progress(f"{graph}: onnx.checker (full check)")
    check_onnx_bytes(data, artifact_name(graph))
    t_check = time.perf_counter()
    cases = parity_cases(
        graph, ckpt.modalities, latent_dim, batch=config.batch, rows=config.parity_rows,
        seed=config.parity_seed,
    )  # fmt: skip
    progress(f"{graph}: parity vs PyTorch through onnxruntime ({len(cases)} cases)")
    reference = TorchRunner(module, ins, outs, name="torch")
    target = OrtRunner(data, name="ort")
    report = check_parity(graph, reference, target, cases)
    require_parity(report, artifact_name(graph))
    end = time.perf_counter()
    timings = {
        "torch_export": round(t_export - start, 3),
        "onnx_checker": round(t_check - t_export, 3),
        "parity": round(end - t_check, 3),
    }
    io = {
        "inputs": [_io_entry(i.name, i.shape, config.batch) for i in ins],
        "outputs": [_io_entry(o.name, o.shape, config.batch) for o in outs],
    }
    return _Built(graph, data, report, end - start, io, timings)


def wrapper(graph: str, ckpt: Any) -> Any:
    """The ``nn.Module`` whose signature is ``graph``'s (eval mode)."""
    from edgevae.model.analyze import AnalyzeGraph, DecodeGraph, EncodeGraph

    if graph == "analyze":
        return AnalyzeGraph(ckpt.model, ckpt.score_stats).eval()
    if graph == "encode":
        return EncodeGraph(ckpt.model).eval()
    return DecodeGraph(ckpt.model).eval()


def to_onnx_bytes(
    module: Any,
    config: ExportConfig,
    metadata: dict[str, str],
    contract: tuple[Sequence[TensorInfo], Sequence[TensorInfo]] | None = None,
) -> bytes:
    """Export ``module`` (an Analyze/Encode/DecodeGraph) and return normalised ONNX bytes.

    Args:
        module: the graph wrapper (its ``input_names``/``output_names``/``dynamic_axes``).
        config: opset and batch.
        metadata: ``metadata_props`` to store (sorted).
        contract: input/output specs (:func:`~edgevae.export.validate.graph_io`); when given,
            the graph's declared I/O shapes are set to them (:func:`set_io_shapes`).

    Raises:
        ExportError: torch.onnx.export failed (message names the first line of the cause), or
            the exported graph lacks a contract tensor name.
    """
    import io

    import onnx
    import torch

    batch = config.batch if isinstance(config.batch, int) else 2
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(
                module,
                module.example_inputs(batch),
                buffer,
                input_names=module.input_names,
                output_names=module.output_names,
                dynamic_axes=module.dynamic_axes if config.dynamic else None,
                opset_version=config.opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # torch raises many types (RuntimeError, OnnxExporterError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"torch.onnx.export failed at opset {config.opset}: {first[:300]}; try the default "
            "--opset or report the model config."
        ) from None
    model = onnx.load_from_string(buffer.getvalue())
    if contract is not None:
        set_io_shapes(model, contract[0], contract[1], config.batch)
    normalize(model, metadata)
    return model.SerializeToString(deterministic=True)


def set_io_shapes(
    model: Any,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
    batch: str | int,
) -> None:
    """Declare each graph input/output with its contract shape, in place.

    Axis ``"batch"`` becomes the symbolic dim ``batch`` (dynamic export) or ``batch`` itself (a
    fixed int); every other axis is its static size. The graph's I/O must be exactly the contract
    names, in order.

    Raises:
        ExportError: the exported graph's input or output names differ from the contract.
    """
    for what, declared, specs in (
        ("inputs", model.graph.input, inputs),
        ("outputs", model.graph.output, outputs),
    ):
        got = [v.name for v in declared]
        want = [s.name for s in specs]
        if got != want:
            raise ExportError(
                f"the exported graph's {what} {got} differ from the contract {want}; the export "
                "wrapper and edgevae.export.validate.graph_io disagree (a bug: report it)."
            )
        for value, spec in zip(declared, specs, strict=True):
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in spec.shape:
                dim = shape.dim.add()
                if size == "batch" and not isinstance(batch, int):
                    dim.dim_param = "batch"
                else:
                    dim.dim_value = batch if size == "batch" else int(size)


def normalize(model: Any, metadata: dict[str, str]) -> None:
    """Strip what varies between identical exports (doc strings, torch's version) in place."""
    model.producer_name = "edgevae"
    model.producer_version = __version__
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        value.doc_string = ""
    del model.metadata_props[:]
    for key in sorted(metadata):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, metadata[key]


def check_onnx_bytes(data: bytes, name: str) -> None:
    """``onnx.checker.check_model(full_check=True)`` on serialized bytes.

    Raises:
        ExportError: the checker's first line.
    """
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, DecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnx.checker rejected {name}: {first[:300]}") from None


def _metadata(graph: str, ckpt: Any) -> dict[str, str]:
    meta = {
        "edgevae_graph": graph,
        "modalities": json.dumps(ckpt.modalities.to_list(), sort_keys=True),
        "latent_dim": str(int(ckpt.model.latent_dim)),
    }
    if graph == "analyze":
        meta["score_stats"] = json.dumps(ckpt.score_stats.to_dict(), sort_keys=True)
    return meta


def _io_entry(name: str, shape: tuple[Any, ...], batch: str | int) -> dict[str, Any]:
    dims = [batch if d == "batch" and isinstance(batch, int) else d for d in shape]
    return {"name": name, "shape": dims, "dtype": "float32"}


def _details(b: _Built, ckpt: Any, config: ExportConfig, run_dir: Path) -> dict[str, Any]:
    from edgevae.model.scoring import part_names

    meta = ckpt.meta
    return {
        "graph": b.graph,
        "precision": "fp32",
        "opset": config.opset,
        "batch": config.batch,
        **b.io,
        "modalities": ckpt.modalities.to_list(),
        "normalization": meta.get("normalization"),
        "score_stats": ckpt.score_stats.to_dict(),
        "part_names": part_names(ckpt.modalities.names),
        "latent_dim": int(ckpt.model.latent_dim),
        "model_config": meta.get("model_config"),
        "parameters": meta.get("parameters"),
        "data": meta.get("data"),
        "run_dir": str(run_dir),
        "export_seconds": round(b.seconds, 3),  # torch export + checker + parity
        "timings_s": b.timings,
    }


def _remove_stale(out_dir: Path, graph: str, new_sha: str) -> None:
    """Delete artifacts derived from an older ``<graph>.onnx``: those whose manifest records
    ``inputs["<graph>.onnx"]`` with another hash. Files without such a manifest are not edgevae's
    derived artifacts and are left alone."""
    source = artifact_name(graph)
    for path in out_dir.glob(f"{graph}.*.onnx"):
        manifest = path.with_name(path.name + ".manifest.json")
        try:
            recorded = json.loads(manifest.read_text()).get("inputs", {}).get(source)
        except (OSError, ValueError, AttributeError):
            continue
        if recorded is not None and recorded != new_sha:
            path.unlink(missing_ok=True)
            manifest.unlink(missing_ok=True)
