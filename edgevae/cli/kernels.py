"""``edgevae kernels ...``: build, inspect and test the custom CUDA kernels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def build(
    arch: list[str] = typer.Option(
        [],
        "--arch",
        help="Target sm_XY (repeatable), or 'all' for every target nvcc lists. Default: sm_72 "
        "sm_80 sm_87 sm_90 sm_110, skipping those this nvcc cannot build.",
    ),
    kernel: list[str] = typer.Option(
        [], "--kernel", help="Kernel to build (repeatable): preprocess, poe_fusion, anomaly_score."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Build directory (default ~/.cache/edgevae/kernels/cuda-<version>)."
    ),
    nvcc: str | None = typer.Option(None, "--nvcc", help="nvcc to use (default: search)."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Parallel compile jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Compile every kernel to PTX and cubin for each target, with a manifest."""
    from rich.console import Console
    from rich.table import Table

    from edgevae.kernels.build import BuildConfig, build_kernels

    config = BuildConfig(archs=tuple(arch), kernels=tuple(kernel), out=out, nvcc=nvcc, jobs=jobs)
    manifest_path = build_kernels(config)
    manifest = json.loads(manifest_path.read_text())
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    tk = manifest["toolkit"]
    table = Table(
        title=f"edgevae kernels built with nvcc {tk['version']} -> {manifest_path.parent}"
    )
    for col in ("kernel", "arch", "kind", "file", "bytes", "PTX ISA"):
        table.add_column(col)
    for name, entry in manifest["kernels"].items():
        for a in entry["artifacts"]:
            table.add_row(name, a["arch"], a["kind"], a["file"], str(a["bytes"]),
                          a.get("ptx_version") or "")  # fmt: skip
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for arch_name, reason in manifest["skipped"].items():
        console.print(f"[yellow]skipped {arch_name}[/yellow]: {reason}")
    console.print(f"manifest: {manifest_path}")


def kernels_info(build_dir: Path | None = None) -> dict[str, Any]:
    """What is here: toolkit, supported targets, built artifacts, GPU and launch backends."""
    import importlib.util

    from edgevae.errors import EdgeVAEError
    from edgevae.kernels.build import (
        DEFAULT_TARGETS,
        default_build_dir,
        plan_targets,
        probe_toolkit,
        read_manifest,
    )

    info: dict[str, Any] = {"toolkit": None, "targets": {}, "build": None}
    try:
        toolkit = probe_toolkit()
        info["toolkit"] = toolkit.to_dict()
        targets, skipped = plan_targets(toolkit)
        info["targets"] = {a: ("ok" if a in targets else skipped[a]) for a in DEFAULT_TARGETS}
        build_dir = build_dir or default_build_dir(toolkit)
    except EdgeVAEError as exc:
        info["toolkit_error"] = str(exc)
    if build_dir is not None:
        manifest = read_manifest(build_dir)
        info["build"] = {
            "dir": str(build_dir),
            "targets": manifest["targets"] if manifest else [],
            "kernels": sorted(manifest["kernels"]) if manifest else [],
        }
    info["cuda_python"] = importlib.util.find_spec("cuda") is not None and (
        importlib.util.find_spec("cuda.bindings") is not None
    )
    info["pycuda"] = importlib.util.find_spec("pycuda") is not None
    info["gpu"] = None
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            info["gpu"] = {"name": torch.cuda.get_device_name(), "arch": f"sm_{major}{minor}"}
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def info(
    build_dir: Path | None = typer.Option(None, "--build-dir", help="Build directory to inspect."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Toolkit, supported targets, what is built, and whether a GPU and cuda-python are here."""
    from rich.console import Console

    data = kernels_info(build_dir)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    tk = data["toolkit"]
    if tk:
        console.print(f"nvcc: {tk['nvcc']} (CUDA {tk['version']})")
        console.print(f"nvcc targets: {' '.join(tk['gpu_codes']) or 'not listed'}")
    else:
        console.print(f"nvcc: [yellow]not available[/yellow] ({data.get('toolkit_error')})")
    for arch_name, status in data["targets"].items():
        mark = "[green]ok[/green]" if status == "ok" else f"[yellow]skipped[/yellow]: {status}"
        console.print(f"  default target {arch_name}: {mark}")
    b = data["build"]
    if b:
        built = ", ".join(b["targets"]) if b["targets"] else "nothing built yet"
        console.print(f"build dir: {b['dir']} ({built})")
    console.print(f"cuda-python: {'yes' if data['cuda_python'] else 'no'}; "
                  f"pycuda: {'yes' if data['pycuda'] else 'no'}")  # fmt: skip
    gpu = data["gpu"]
    console.print(f"GPU: {gpu['name']} ({gpu['arch']})" if gpu else "GPU: none visible to PyTorch")


def run_tests(
    gpu: bool | None = typer.Option(
        None, "--gpu/--no-gpu", help="Run the GPU checks (default: when a GPU is present)."
    ),
    backend: str = typer.Option("cuda-python", "--backend", help="cuda-python or pycuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Check the kernels' host math (always) and the kernels on the GPU (when there is one)."""
    from rich.console import Console
    from rich.table import Table

    from edgevae.kernels.checks import run_gpu_checks, run_host_checks

    suites = [("host", run_host_checks())]
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    if gpu:
        suites.append((f"gpu ({backend})", run_gpu_checks(backend)))
    failed = sum(not r.passed for _, results in suites for r in results)
    if as_json:
        typer.echo(json.dumps({
            name: [{"kernel": r.kernel, "case": r.case, "output": r.output, "error": r.error,
                    "tol": r.tol, "passed": r.passed} for r in results]
            for name, results in suites
        }, indent=2))  # fmt: skip
    else:
        console = Console(width=max(Console().width, 110))
        for name, results in suites:
            table = Table(title=f"kernel checks: {name} vs NumPy reference")
            for col in ("kernel", "case", "output", "error", "tol", ""):
                table.add_column(col)
            for r in results:
                mark = "[green]✅[/green]" if r.passed else "[red]❌[/red]"
                table.add_row(r.kernel, r.case, r.output, f"{r.error:.2e}", f"{r.tol:.0e}", mark)
            console.print(table)
        if not gpu:
            console.print("GPU checks skipped: no CUDA GPU here (the kernels did not run).")
    if failed:
        typer.secho(f"{failed} kernel check(s) failed.", fg="red", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``edgevae kernels build|info|test`` to ``app``."""
    kernels_app = typer.Typer(
        help="Build, inspect and test the custom CUDA kernels.", no_args_is_help=True
    )
    kernels_app.command("build")(build)
    kernels_app.command("info")(info)
    kernels_app.command("test")(run_tests)
    app.add_typer(kernels_app, name="kernels")
