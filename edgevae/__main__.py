"""``python -m edgevae`` (used by torchrun: ``torchrun ... -m edgevae train ...``)."""

from edgevae.cli import main

main()
