"""``edgevae eval``: evaluate a trained run on a dataset."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by the stage that owns it)."""
