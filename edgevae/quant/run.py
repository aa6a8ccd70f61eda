"""``quantize(export_dir, QuantConfig)``: FP16 / INT8 artifacts of an export, each gated.

Order of work (everything that can be refused is refused before anything is computed, and
nothing is written before every artifact is built and gated):

1. validate the export directory: each ``<graph>.onnx`` with its manifest, from a compatible
   edgevae version, unmodified (SHA-256 as recorded), loadable, FP32 and not already quantized;
2. load the recipe, the held-out gate data (``test`` split) and, for INT8, the calibration
   samples (too few is refused unless ``force``);
3. per graph: pre-process, calibrate once (or reuse the cached ranges), then build each flavor;
4. gate every built artifact against the FP32 graph on the same data;
5. write the artifacts (atomically) with manifests recording the precision actually used, recipe,
   method, excluded nodes and the gate's verdict, and ``quantize.<precision>.gate.json``.

An artifact whose build fails is reported ``error`` (❌) and not written; one that fails the gate
is written and reported ``failed`` (❎); nothing is ever silently replaced by another precision.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.artifacts import (
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_manifest,
)
from edgevae._version import __version__
from edgevae.errors import (
    ConfigError,
    ExportError,
    OutputExistsError,
    QuantizationError,
)
from edgevae.quant import gate as gate_mod
from edgevae.quant.calibration import (
    Recipe,
    cache_path,
    load_recipe,
    ranges_to_payload,
    read_cache,
    sample_calibration,
    write_cache,
)
from edgevae.quant.config import GRAPHS, QuantConfig, artifact_name

ProgressFn = Callable[[str], None]
MODULES = ("numpy", "onnx", "onnxruntime", "onnxconverter-common", "nvidia-modelopt")
REQUIRED_DETAILS = ("graph", "modalities", "normalization", "inputs", "outputs")


def _ignore(line: str) -> None:
    del line


@dataclass
class Source:
    """A validated FP32 graph of the export directory."""

    graph: str
    path: Path
    data: bytes
    sha256: str
    manifest: dict[str, Any]

    @property
    def details(self) -> dict[str, Any]:
        return self.manifest["details"]


@dataclass
class ArtifactResult:
    """One artifact's outcome: ``passed`` ✅, ``failed`` ❎ (built, gate failed), ``error`` ❌."""

    graph: str
    flavor: str
    name: str
    verdict: str
    path: Path | None = None
    error: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None

    @property
    def precision(self) -> str:
        return "fp16" if self.flavor == "fp16" else "int8"

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "artifact": self.name,
            "flavor": self.flavor,
            "precision": self.precision,
            "target": "trt" if self.flavor in ("fp16", "trt") else "cpu",
            "verdict": self.verdict,
            "symbol": gate_mod.SYMBOL[self.verdict],
            "path": str(self.path) if self.path else None,
            "error": self.error,
            "gate": self.gate,
            "details": {k: v for k, v in self.details.items() if k != "fp32_nodes"},
        }


@dataclass
class QuantResult:
    """Everything a quantization run produced (see :meth:`to_dict` for the JSON schema)."""

    export_dir: Path
    config: QuantConfig
    artifacts: list[ArtifactResult]
    gate_data: dict[str, Any]
    calibration: dict[str, Any]
    recipe: dict[str, Any] | None
    report_path: Path | None = None
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """``error`` if any artifact failed to build, else ``failed`` if any failed the gate."""
        verdicts = {a.verdict for a in self.artifacts}
        return "error" if "error" in verdicts else "failed" if "failed" in verdicts else "passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "export_dir": str(self.export_dir),
            "precision": self.config.precision,
            "config": self.config.to_dict(),
            "verdict": self.verdict,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "gate_data": self.gate_data,
            "calibration": self.calibration,
            "recipe": self.recipe,
            "edgevae_version": __version__,
            "seconds": round(self.seconds, 2),
        }


# -- validation ------------------------------------------------------------------------------------
def _compatible(version: str | None) -> bool:
    """Same major.minor as this edgevae (0.x minors may change the export contract)."""
    if not isinstance(version, str):
        return False
    return version.split(".")[:2] == __version__.split(".")[:2]


def load_source(export_dir: Path, graph: str) -> Source:
    """Validate ``<graph>.onnx`` and its manifest (see the module docstring, step 1).

    Raises:
        ExportError: missing/corrupt/truncated/modified file, missing or foreign manifest, or an
            export from an incompatible edgevae version.
        QuantizationError: the graph is already quantized (or FP16).
    """
    import onnx

    from edgevae.quant.graph import float16_tensors, quantized_ops

    path = export_dir / f"{graph}.onnx"
    fix = f"re-export it with `edgevae export RUN --out {export_dir} --overwrite`"
    side = path.with_name(path.name + ".manifest.json")
    try:
        manifest = json.loads(side.read_text())
    except FileNotFoundError:
        raise ExportError(
            f"{path.name} in '{export_dir}' has no manifest ({side.name}), so it is not an "
            f"edgevae export (or an incomplete one); {fix}."
        ) from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{side} is unreadable ({exc}); {fix}.") from None
    details = manifest.get("details") if isinstance(manifest, dict) else None
    if not isinstance(details, dict) or manifest.get("kind") != "onnx":
        raise ExportError(f"{side.name} does not describe an ONNX export; {fix}.")
    precision = details.get("precision")
    if precision not in (None, "fp32"):
        raise QuantizationError(
            f"{path.name} in '{export_dir}' is already quantized ({precision}); quantize the FP32 "
            "export (the directory `edgevae export` wrote), not a quantized artifact."
        )
    made_by = (manifest.get("created_by") or {}).get("tool_versions", {}).get("edgevae")
    if not _compatible(made_by):
        raise ExportError(
            f"{path.name} in '{export_dir}' was exported by edgevae {made_by or 'unknown'}, "
            f"which is incompatible with this edgevae {__version__}; {fix}."
        )
    missing = [k for k in REQUIRED_DETAILS if k not in details]
    if missing:
        raise ExportError(
            f"{side.name} lacks {', '.join(missing)} (an export from another edgevae version); "
            f"{fix}."
        )
    if not path.is_file():
        raise ExportError(f"'{path}' is missing; {fix}.")
    sha = sha256_file(path)
    if manifest.get("sha256") not in (None, sha):
        raise ExportError(
            f"{path.name} in '{export_dir}' does not match the SHA-256 its manifest records "
            f"({path.stat().st_size} bytes; truncated, corrupt or modified); {fix}."
        )
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"{path.name} in '{export_dir}' is not a valid ONNX model ({first[:200]}); {fix}."
        ) from None
    qops = quantized_ops(model)
    if qops or float16_tensors(model):
        what = f"{', '.join(qops)} nodes" if qops else "FP16 tensors"
        raise QuantizationError(
            f"{path.name} in '{export_dir}' already holds {what} (it is quantized); quantize "
            "the FP32 export `edgevae export` wrote."
        )
    return Source(graph, path, data, sha, manifest)


def _sources(export_dir: Path, config: QuantConfig) -> list[Source]:
    if not export_dir.is_dir():
        raise ConfigError(
            f"export directory '{export_dir}' does not exist; create it with `edgevae export RUN "
            f"--out {export_dir}`."
        )
    graphs = config.graphs or tuple(g for g in GRAPHS if (export_dir / f"{g}.onnx").exists())
    if not graphs:
        raise ExportError(
            f"'{export_dir}' holds no analyze.onnx, encode.onnx or decode.onnx; create them with "
            f"`edgevae export RUN --out {export_dir}`."
        )
    sources = [load_source(export_dir, g) for g in graphs]
    first = sources[0].details
    for s in sources[1:]:
        if s.details["modalities"] != first["modalities"]:
            raise ExportError(
                f"{s.path.name} and {sources[0].path.name} in '{export_dir}' are exports of "
                "different models; re-export the directory in one `edgevae export` run."
            )
    return sources


def _check_outputs(export_dir: Path, sources: list[Source], config: QuantConfig) -> None:
    existing = [
        artifact_name(s.graph, f)
        for s in sources
        for f in config.flavors
        if (export_dir / artifact_name(s.graph, f)).exists()
    ]
    if existing and not config.overwrite:
        raise OutputExistsError(
            f"'{export_dir}' already holds {', '.join(existing)}; pass --overwrite to replace them."
        )


def _data_dir(data_dir: str | os.PathLike[str] | None, source: Source) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    recorded = (source.details.get("data") or {}).get("path")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    raise ConfigError(
        "no dataset for calibration and the accuracy gate: the export does not record one that "
        "exists here; pass --data DIR (a dataset with the model's modalities and a test split)."
    )


# -- orchestration ---------------------------------------------------------------------------------
def quantize(
    export_dir: str | os.PathLike[str],
    config: QuantConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> QuantResult:
    """Make, gate and write the artifacts ``config`` asks for.

    Args:
        export_dir: a directory written by ``edgevae export``.
        config: precision, target, recipe, method, ... (default: INT8 for both targets).
        data_dir: the dataset for calibration (recipe's split) and the gate (``test`` split);
            default: the dataset recorded in the export's manifest.
        progress: called with one line per step.

    Returns:
        The :class:`QuantResult` (check ``.verdict``; artifacts that failed to build were not
        written, artifacts that failed the gate were written and marked).

    Raises:
        ConfigError, ExportError, QuantizationError, CalibrationError, DatasetError, ShapeError,
        OutputExistsError, MissingDependencyError: bad input, before anything is written.
    """
    start = time.perf_counter()
    config = config or QuantConfig()
    say = progress or _ignore
    export_dir = Path(export_dir)
    if config.backend == "modelopt" and config.precision == "int8":
        from edgevae._util.lazy import require

        require("modelopt.onnx.quantization")  # refuse before any work
    recipe = load_recipe(config.recipe) if config.precision == "int8" else None
    sources = _sources(export_dir, config)
    _check_outputs(export_dir, sources, config)
    info = sources[0].details
    from edgevae.modalities import ModalitySet

    modalities = ModalitySet.from_list(info["modalities"])
    data = _data_dir(data_dir, sources[0])
    say(f"gate data: test split of {data}")
    gate_data = gate_mod.load_gate_data(data, modalities, info["normalization"], config.gate_clips)
    calib = None
    if recipe is not None:
        say(f"calibration: recipe '{recipe.name}' from {data}")
        calib = sample_calibration(
            data, modalities, info["normalization"], recipe, config.samples, force=config.force
        )
    builder = _Builder(export_dir, config, recipe, calib, gate_data, sources, say)
    results = builder.run()
    result = QuantResult(
        export_dir, config, results, gate_data.summary, builder.calibration_info,
        recipe.to_dict() if recipe else None,
    )  # fmt: skip
    _write(result, sources)
    result.seconds = time.perf_counter() - start
    return result


class _Builder:
    """Builds and gates every (graph, flavor) artifact in memory."""

    def __init__(
        self,
        export_dir: Path,
        config: QuantConfig,
        recipe: Recipe | None,
        calib: Any,
        gate_data: gate_mod.GateData,
        sources: list[Source],
        say: ProgressFn,
    ) -> None:
        self.export_dir, self.config, self.recipe, self.calib = export_dir, config, recipe, calib
        self.gate_data, self.sources, self.say = gate_data, sources, say
        self.calibration_info: dict[str, Any] = dict(calib.summary) if calib else {}
        self.calibration_info["graphs"] = {}
        self._latents: dict[str, tuple[np.ndarray, str]] = {}
        self._payloads: dict[str, dict[str, Any]] = {}

    # FP32 latents feed the decode graph, in calibration and in the gate
    def _latent(self, which: str) -> tuple[np.ndarray, str]:
        """FP32 ``z_mu`` of the calibration (``calib``) or gate (``gate``) clips, and its source."""
        if which in self._latents:
            return self._latents[which]
        from edgevae.runtime.ort_runner import OrtRunner

        donor = next(
            (p for p in ("analyze", "encode") if (self.export_dir / f"{p}.onnx").is_file()), None
        )
        if donor is None:
            rng = np.random.default_rng(self.recipe.seed if self.recipe else 0)
            n = len(self.calib) if which == "calib" else len(self.gate_data)
            dim = int(self.sources[0].details.get("latent_dim", 1))
            z = rng.standard_normal((n, dim)).astype(np.float32)
            how = "N(0, I) prior samples (no analyze/encode graph in the export)"
        else:
            src = next((s for s in self.sources if s.graph == donor), None)
            runner = OrtRunner(src.data if src else load_source(self.export_dir, donor).data)
            batches = self.calib.batches(64) if which == "calib" else self.gate_data.batches()
            z = np.concatenate([runner.run(b)["z_mu"] for b in batches]).astype(np.float32)
            how = f"FP32 z_mu of {donor}.onnx on the same clips"
        self._latents[which] = (z, how)
        return z, how

    def run(self) -> list[ArtifactResult]:
        results: list[ArtifactResult] = []
        prepared = {s.graph: self._prepare(s) for s in self.sources}
        self._check_exclude(prepared)
        for source in self.sources:
            for flavor in self.config.flavors:
                results.append(self._build_and_gate(source, flavor, prepared[source.graph]))
        return results

    def _prepare(self, source: Source) -> dict[str, Any]:
        """Pre-process for INT8 (shared by both flavors)."""
        if self.config.precision == "fp16":
            return {}
        from edgevae.quant.int8 import preprocess

        self.say(f"{source.graph}: pre-processing")
        return {"pre": preprocess(source.data)}

    def _check_exclude(self, prepared: Mapping[str, Mapping[str, Any]]) -> None:
        import re

        import onnx

        if not self.config.exclude or self.config.precision != "int8":
            return
        names = [
            n.name for p in prepared.values() for n in onnx.load_from_string(p["pre"]).graph.node
        ]
        for pattern in self.config.exclude:
            if not any(re.search(pattern, n) for n in names):
                raise ConfigError(
                    f"--exclude '{pattern}' matches no node of the graphs being quantized; take "
                    "node names from the per-layer report of the gate (--json) or drop it."
                )

    def _ranges(self, source: Source, pre: bytes) -> dict[str, Any]:
        """Cached activation ranges of ``source`` (calibrating when the cache does not match)."""
        from onnxruntime import __version__ as ort_version

        from edgevae.quant.int8 import calibrate

        if source.graph in self._payloads:  # the second flavor of the same graph
            return self._payloads[source.graph]
        cfg, recipe = self.config, self.recipe
        if recipe is None or self.calib is None:
            raise QuantizationError("INT8 quantization needs calibration samples (internal).")
        feeds, z_source = self._calib_feeds(source.graph)
        key = {
            "graph": source.graph,
            "fp32_sha256": source.sha256,
            "method": cfg.method,
            "recipe": recipe.to_dict(),
            "samples": len(self.calib),
            "data_index_sha256": self.calib.summary["index_sha256"],
            "onnxruntime": ort_version,
            "latents": z_source,
        }
        path = cache_path(self.export_dir, source.graph, cfg.method)
        payload, status = read_cache(path, key)
        info = {"cache": str(path), "status": status}
        if payload is None:
            self.say(f"{source.graph}: calibrating ({cfg.method}, {len(self.calib)} samples)")
            t = time.perf_counter()
            ranges = calibrate(pre, self.calib.batches(recipe.batch_size, feeds), cfg.method)
            payload = ranges_to_payload(ranges)
            write_cache(path, key, payload)
            info.update(status=f"calibrated ({status})", seconds=round(time.perf_counter() - t, 2))
        else:
            self.say(f"{source.graph}: reusing cached ranges {path.name}")
        info["sha256"] = sha256_file(path)
        info["latents"] = z_source
        self.calibration_info["graphs"][source.graph] = info
        self._payloads[source.graph] = payload
        return payload

    def _calib_feeds(self, graph: str) -> tuple[dict[str, np.ndarray], str | None]:
        if graph != "decode":
            return self.calib.feeds, None
        z, how = self._latent("calib")
        return {"z": z}, how

    def _build(self, source: Source, flavor: str, prep: Mapping[str, Any]) -> tuple[bytes, dict]:
        if flavor == "fp16":
            from edgevae.quant.fp16 import convert

            self.say(f"{source.graph}: FP16 conversion")
            return convert(source.data)
        import onnx

        from edgevae.quant import int8

        pre = prep["pre"]
        model = onnx.load_from_string(pre)
        p = int8.plan(model, flavor, exclude=self.config.exclude, config=self.config)
        if self.config.backend == "modelopt":
            feeds, _ = self._calib_feeds(source.graph)
            self.say(f"{source.graph}: ModelOpt INT8 ({flavor})")
            data = int8.quantize_modelopt(pre, p, feeds, self.config.method)
        else:
            payload = self._ranges(source, pre)
            self.say(f"{source.graph}: ONNX Runtime INT8 Q/DQ ({flavor})")
            data = int8.quantize_ort(pre, p, payload, self.config.method)
        details = {"quantization": p.to_dict(), **int8.verify(data, p)}
        return data, details

    def _build_and_gate(
        self, source: Source, flavor: str, prep: Mapping[str, Any]
    ) -> ArtifactResult:
        from edgevae.runtime.ort_runner import OrtRunner

        name = artifact_name(source.graph, flavor)
        try:
            data, details = self._build(source, flavor, prep)
        except QuantizationError as exc:
            self.say(f"{name}: build failed: {exc}")
            return ArtifactResult(source.graph, flavor, name, "error", error=str(exc))
        precision = "fp16" if flavor == "fp16" else "int8"
        self.say(f"{name}: accuracy gate on {len(self.gate_data)} test clips")
        z = self._latent("gate")[0] if source.graph == "decode" else None
        feeds = gate_mod.graph_feeds(source.graph, self.gate_data, z)
        reference = OrtRunner(source.data, name="onnx-fp32")
        candidate = OrtRunner(data, name=name)
        cmp = gate_mod.compare_runners(
            source.graph, precision, reference, candidate, feeds, self.gate_data
        )
        verdict = gate_mod.verdict(cmp["outputs"], cmp["task"])
        gate = {
            "verdict": verdict,
            "first_failure": gate_mod.first_failure(cmp["outputs"], cmp["task"]),
            "runtime": "onnxruntime CPU" + (" (Q/DQ fake-quantized)" if flavor == "trt" else ""),
            "outputs": gate_mod.outputs_to_dict(cmp["outputs"]),
            "task": cmp["task"],
        }
        if flavor in ("trt", "cpu"):
            self.say(f"{name}: per-layer error report")
            gate["layers"] = gate_mod.layer_report(
                prep["pre"], data, feeds, details["quantization"]["excluded"]
            )
        return ArtifactResult(
            source.graph, flavor, name, verdict, gate=gate, details=details, data=data
        )


# -- writing ---------------------------------------------------------------------------------------
def _write(result: QuantResult, sources: list[Source]) -> None:
    by_graph = {s.graph: s for s in sources}
    cfg = result.config
    for art in result.artifacts:
        if art.data is None:
            continue
        src = by_graph[art.graph]
        path = result.export_dir / art.name
        write_bytes_atomic(path, art.data)
        art.data = None
        art.path = path
        inputs = {src.path.name: src.sha256}
        calib = result.calibration.get("graphs", {}).get(art.graph)
        if calib and calib.get("sha256") and art.flavor != "fp16":
            inputs[Path(calib["cache"]).name] = calib["sha256"]
        if art.flavor != "fp16" and result.calibration.get("index_sha256"):
            inputs["calibration data index.json"] = result.calibration["index_sha256"]
        keep = ("graph", "opset", "batch", "inputs", "outputs", "modalities", "normalization",
                "score_stats", "part_names", "latent_dim", "model_config", "parameters", "data",
                "run_dir")  # fmt: skip
        details = {k: src.details[k] for k in keep if k in src.details}
        details.update(
            precision=art.precision,
            target="cpu" if art.flavor == "cpu" else "trt",
            source=src.path.name,
            backend=cfg.backend if art.flavor != "fp16" else "onnxconverter-common",
            recipe=result.recipe if art.flavor != "fp16" else None,
            method=cfg.method if art.flavor != "fp16" else None,
            calibration=(
                {k: v for k, v in result.calibration.items() if k != "graphs"} | (calib or {})
                if art.flavor != "fp16"
                else None
            ),
            **art.details,
        )
        excluded = (art.details.get("quantization") or {}).get("excluded")
        details["excluded_nodes"] = (
            excluded
            if excluded is not None
            else {n: "fp32 island (fusion/scoring)" for n in art.details.get("fp32_nodes", [])}
        )
        write_manifest(
            path,
            kind="onnx",
            config=cfg.to_dict(),
            inputs=inputs,
            details=details,
            checks={"accuracy_gate": art.gate},
            modules=MODULES,
        )
    report = result.export_dir / f"quantize.{cfg.precision}.gate.json"
    write_json_atomic(report, result.to_dict())
    result.report_path = report
