"""Single source of the package version (read by pyproject and `edgevae --version`)."""

__version__ = "0.1.0"
