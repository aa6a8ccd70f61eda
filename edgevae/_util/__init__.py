"""Small shared utilities at the bottom of the import graph (no torch imports at module level)."""
