"""Run the CLI in-process the way a user does (same error handling as the console script)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgevae.cli import run


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """Run ``edgevae *args`` and return exit code, stdout and stderr."""
    capsys.readouterr()
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
