"""``edgevae bench``: latency/throughput/accuracy of any artifact on any backend."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by the stage that owns it)."""
