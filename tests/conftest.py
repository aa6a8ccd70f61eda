"""Markers and hardware auto-skips: a plain ``pytest`` is green on a laptop without a GPU.

* ``gpu``: needs CUDA (torch.cuda.is_available()).
* ``trt``: needs the ``tensorrt`` package and a GPU.
* ``jetson``: needs a Jetson (``/etc/nv_tegra_release``).
* ``slow``: runs with ``--run-slow`` or ``EDGEVAE_RUN_SLOW=1``.
Hardware is probed once, at collection, and only if a marked test was collected.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run slow tests")


@functools.cache
def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _has_trt() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and _has_cuda()


def _is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").exists()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow") or os.environ.get("EDGEVAE_RUN_SLOW") == "1"
    checks = {
        "gpu": (_has_cuda, "needs a CUDA GPU"),
        "trt": (_has_trt, "needs TensorRT and a CUDA GPU"),
        "jetson": (_is_jetson, "needs a Jetson device"),
        "slow": (lambda: run_slow, "slow: run with --run-slow or EDGEVAE_RUN_SLOW=1"),
    }
    for item in items:
        for marker, (available, reason) in checks.items():
            if marker in item.keywords and not available():
                item.add_marker(pytest.mark.skip(reason=reason))
