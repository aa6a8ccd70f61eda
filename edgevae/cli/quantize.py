"""``edgevae quantize``: FP16 / INT8 artifacts with an accuracy gate."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (filled in by the stage that owns it)."""
