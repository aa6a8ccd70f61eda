"""The ``edgevae`` command line: a thin typer skin over the library's stage functions.

Only this package prints or exits. Library errors (:class:`edgevae.errors.EdgeVAEError`) become a
one-line ``error: ...`` on stderr and their exit code (2 for bad input), never a traceback.
Command modules import heavy libraries (torch, onnxruntime) inside the commands, so
``edgevae --help`` stays fast and imports neither.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from edgevae._version import __version__
from edgevae.cli import (
    analyze,
    bench,
    build,
    evaluate,
    export,
    ingest,
    kernels,
    model,
    pipeline,
    quantize,
    train,
)
from edgevae.cli import data as data_cmds
from edgevae.errors import EdgeVAEError

# typer >= 0.25 vendors click (typer._click); older releases use click itself.
try:
    _UsageBase: type[Exception] = typer.TyperException  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - older typer
    import click

    _UsageBase = click.ClickException

app = typer.Typer(
    name="edgevae",
    help="Train, analyse with, and deploy compact multimodal VAEs on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cmds.app, name="data")
ingest.register(data_cmds.app)  # `edgevae data ingest`
for _module in (pipeline, train, evaluate, export, quantize, build, bench, analyze, model, kernels):
    _module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgevae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """edgevae: multimodal VAEs from training to TensorRT engines on Jetson."""


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="edgevae",
            standalone_mode=False,
        )
    except EdgeVAEError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.secho("aborted.", fg="red", err=True)
        return 130
    except _UsageBase as exc:
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        typer.secho(
            "interrupted; completed artifacts are kept, partial ones discarded.", fg="red", err=True
        )
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
