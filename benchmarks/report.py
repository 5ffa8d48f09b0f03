"""A benchmark's report: its rows, the markdown table, the machine it ran on, and the JSON
file (``python -m benchmarks.run --json``, read back by ``benchmarks.plot``)."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    group: str
    measure: str
    value: float
    unit: str
    spread: str = ""
    goal: str = ""
    met: bool | None = None
    samples: list[float] = field(default_factory=list)
    # A difference of two timings taken in pairs: noise when its paired samples fall on
    # both sides of zero, so neither its size nor its sign means anything.
    difference: bool = False
    noise: bool = False


def machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def markdown(rows: list[Row]) -> str:
    lines = ["| group | measure | median | spread | goal | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        value = "n/a" if row.value != row.value else f"{row.value:.3g} {row.unit}"
        if row.noise:
            value += " (noise: its paired samples straddle 0)"
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.group} | {row.measure} | {value} | {row.spread} | {row.goal} | {met} |")
    return "\n".join(lines)


def publish(report: dict, table: str, what: str, json_path: Path | None) -> None:
    """Print a benchmark's table and what ran where; also write the report as JSON if asked,
    dated (a committed figure says when it was measured)."""
    print(table)
    print(f"\n{what}, on {report['machine']}")
    if json_path:
        Path(json_path).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), **report}, indent=2) + "\n")
