"""``edgevae data ...``: make, ingest and look at datasets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Make, ingest and inspect datasets.", no_args_is_help=True)
