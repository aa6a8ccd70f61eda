"""Render rich tables as GitHub-flavoured Markdown, so a report shows what the CLI printed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _plain(cell: Any) -> str:
    from rich.text import Text

    text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells may hold rich markup, which is stripped.

    >>> print(markdown_table(["a", "b"], [[1, "[bold]2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = [
        "| " + " | ".join(_plain(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_plain(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rich_to_markdown(table: Any) -> str:
    """A ``rich.table.Table`` as Markdown: its title in bold, the table, its caption in italics."""
    columns = list(table.columns)
    cells = [list(c.cells) for c in columns]
    rows = [[col[i] for col in cells] for i in range(table.row_count)]
    parts = []
    if table.title:
        parts.append(f"**{_plain(table.title)}**\n")
    parts.append(markdown_table([str(c.header) for c in columns], rows))
    if table.caption:
        parts.append(f"\n_{_plain(table.caption)}_")
    return "\n".join(parts)
