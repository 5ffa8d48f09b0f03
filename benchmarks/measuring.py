"""How every group takes its figures: a timer, two sides interleaved, percentiles and the
spread of repeats."""

from __future__ import annotations

import time
from typing import Callable


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each side once per round, alternating which goes first, and collect its figures."""
    results: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_number in range(repeats):
        for name in (names if round_number % 2 == 0 else list(reversed(names))):
            results[name].append(sides[name]())
    return results


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(min(values))} to {fmt.format(max(values))}" if len(values) > 1 else ""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
