"""Validating a value against a fixed set of names, with a 'did you mean' suggestion."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from edgevae.errors import ConfigError


def closest(value: str, valid: Iterable[str]) -> str | None:
    """Return the valid name closest to ``value``, or None when nothing is close."""
    matches = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.4)
    return matches[0] if matches else None


def check_choice(value: str, valid: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``valid``; else raise ConfigError naming the closest one.

    Example:
        >>> check_choice("tiny", ["tiny", "default"], "preset")
        'tiny'
    """
    valid = list(valid)
    if value in valid:
        return value
    hint = closest(value, valid)
    did_you_mean = f" Did you mean '{hint}'?" if hint else ""
    raise ConfigError(f"unknown {what} '{value}'.{did_you_mean} Valid values: {', '.join(valid)}.")
