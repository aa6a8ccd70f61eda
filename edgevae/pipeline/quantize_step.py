"""The pipeline's quantize stage: FP16 and INT8 (for TensorRT and for the CPU), each gated.

Both :func:`edgevae.quant.quantize` results are collected into ``export/gates.json``
(``{"results": [QuantResult.to_dict(), ...]}``) and ``export/gates.md`` for the report. An artifact
that fails its gate is kept and marked ❎ (never a silent downgrade); one that fails to build is
marked ❌ and the pipeline goes on without it: the report shows both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevae._util.artifacts import write_bytes_atomic, write_json_atomic

if TYPE_CHECKING:
    from edgevae.pipeline.config import PipelineConfig

GATES_JSON = "gates.json"
GATES_MD = "gates.md"


def quantize_all(
    export_dir: Path, data_dir: Path, cfg: PipelineConfig, say: Callable[[str], None] | None
) -> list[Path]:
    """Quantize every graph of ``export_dir`` to FP16 and INT8 (both targets); returns the files
    written (artifacts and the two gate summaries)."""
    from edgevae.quant import QuantConfig, quantize
    from edgevae.quant.report import markdown

    recipe = "quick" if cfg.quick else "default"
    results: list[dict[str, Any]] = []
    written: list[Path] = []
    for precision in ("fp16", "int8"):
        qcfg = QuantConfig(
            precision=precision,
            recipe=recipe,
            samples=cfg.calibration_samples,
            overwrite=True,
        )
        result = quantize(export_dir, qcfg, data_dir, progress=say)
        doc = result.to_dict()
        results.append(doc)
        written += [a.path for a in result.artifacts if a.path is not None]
    md = "\n".join(_demote(markdown(doc)) for doc in results)
    written.append(write_json_atomic(export_dir / GATES_JSON, {"results": results}))
    written.append(write_bytes_atomic(export_dir / GATES_MD, md.encode()))
    return written


def _demote(text: str) -> str:
    """Headings of a standalone report one level lower (``#`` -> ``###``) to nest in report.md."""
    return "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines())
