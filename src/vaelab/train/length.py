"""How long a run trains: whole epochs, an exact number of steps, or a wall-clock budget.

    epochs        stop after E passes over the data; the LR schedule runs on step / (E * steps per epoch)
    steps         stop after exactly N optimiser steps; the schedule runs on step / N
    time budget   stop when the run's clock reaches B seconds; the schedule runs on clock / B,
                  so warm-up and decay finish exactly at the budget

Epochs and steps are bitwise reproducible; a time budget is not (how many steps fit depends on the
machine's speed at that moment), so a budgeted run records the steps it took and `--steps N` replays
that count exactly. The clock counts all of training's wall time (steps, per-epoch evaluation,
checkpoints), lives in the checkpoint and so carries across resumes: a resumed run spends what is left.
An epoch cut short by the end of the steps or the budget still counts as one (with fewer images).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vaelab.errors import VaelabError

UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int) -> float:
    """Seconds in '90', '90s', '5m', '1h', '1h30m' or '2.5m' (a number alone is seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        cleaned = str(text).strip().lower()
        parts = re.fullmatch(r"((?:\d+(?:\.\d+)?[smh])+|\d+(?:\.\d+)?)", cleaned)
        if not parts:
            raise VaelabError(f"time budget {text!r} is not a duration; write e.g. 90s, 5m, 1h or 1h30m")
        if cleaned[-1].isdigit():
            seconds = float(cleaned)
        else:
            seconds = sum(float(n) * UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", cleaned))
    if not (math.isfinite(seconds) and seconds > 0):
        raise VaelabError(f"time budget must be a positive duration, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """'4m', '2m30s', '45s', '1h5m': the form parse_duration reads back."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


@dataclass(frozen=True)
class RunLength:
    unit: str  # "steps" (epochs become steps) or "seconds"
    total: float
    described: str  # for log lines: "10 epochs", "5,000 steps", "a 4m budget"

    @classmethod
    def of(cls, epochs: int, steps: int | None, time_budget: float | None, steps_per_epoch: int) -> "RunLength":
        if time_budget is not None:
            return cls("seconds", time_budget, f"a {format_duration(time_budget)} time budget")
        if steps is not None:
            return cls("steps", steps, f"{steps:,} step{'s' if steps != 1 else ''}")
        return cls("steps", epochs * steps_per_epoch, f"{epochs} epoch{'s' if epochs != 1 else ''}")

    def fraction(self, steps_done: int, seconds: float) -> float:
        """How far through the run the step about to be taken is, in [0, 1): the LR schedule's input.
        A step is read at its midpoint, so neither the first nor the last step gets a zero rate."""
        if self.unit == "seconds":
            return min(seconds / self.total, 1.0)
        return (steps_done + 0.5) / max(self.total, 1)

    def done(self, steps_done: int, seconds: float) -> bool:
        if self.unit == "seconds":
            return seconds >= self.total
        return steps_done >= self.total
