"""``edgevae analyze``: run a model over camera files and write scores and videos."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by the stage that owns it)."""
