"""Progress reporting of the training loop: events for a callback, and the time budget.

The library never prints: :func:`edgevae.train.train` calls ``progress(event)`` and the CLI
renders the events with rich.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgevae.train.config import TrainConfig


@dataclass(frozen=True)
class ProgressEvent:
    """What the loop reports to the ``progress`` callback (the library itself never prints).

    ``kind`` is ``start``, ``step`` (after every optimiser step), ``epoch`` (after the epoch's
    checkpoint is written; also after a mid-epoch stop) or ``done`` (after score fitting). Epochs
    and steps are 1-based here. Raising from the callback stops training; an exception raised on
    an ``epoch`` event leaves that epoch's checkpoint complete (tests use it to simulate a kill).
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    global_step: int
    parts: Mapping[str, float] = field(default_factory=dict)
    lr: float = 0.0
    samples_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    val_loss: float | None = None
    best_val: float | None = None
    improved: bool = False
    message: str = ""


ProgressFn = Callable[[ProgressEvent], None]


ProgressFn = Callable[[ProgressEvent], None]


class Clock:
    """Wall-clock budget, ETA and the :class:`ProgressEvent` factory of one ``train`` call.

    Args:
        counters: the loop's counters (read live: ``epoch``, ``step_in_epoch``, ``global_step``,
            ``best_val``).
        cfg: the train config (epochs, time budget).
        steps_per_epoch: optimiser steps per epoch.
    """

    def __init__(self, counters: Any, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.counters, self.cfg, self.steps_per_epoch = counters, cfg, steps_per_epoch
        self.start = time.perf_counter()
        self.deadline = self.start + cfg.max_minutes * 60 if cfg.max_minutes else None
        self.steps_at_start = counters.global_step
        self.last_step = max(cfg.epochs * steps_per_epoch, self.steps_at_start)

    def out_of_time(self) -> bool:
        """Budget spent, and this invocation has trained at least one step (always progress)."""
        made_progress = self.counters.global_step > self.steps_at_start
        return self.deadline is not None and made_progress and time.perf_counter() >= self.deadline

    def event(self, kind: str, **fields: Any) -> ProgressEvent:
        c, cfg, now = self.counters, self.cfg, time.perf_counter()
        done = c.global_step - self.steps_at_start
        eta = (now - self.start) / done * (self.last_step - c.global_step) if done else None
        if eta is not None and self.deadline is not None:
            eta = max(min(eta, self.deadline - now), 0.0)
        return ProgressEvent(
            kind=kind,
            epoch=min(c.epoch + 1, cfg.epochs),
            epochs=cfg.epochs,
            step=c.step_in_epoch,
            steps_per_epoch=self.steps_per_epoch,
            global_step=c.global_step,
            elapsed_s=now - self.start,
            eta_s=eta,
            best_val=c.best_val if math.isfinite(c.best_val) else None,
            **fields,
        )
