"""How much each benchmark group measures: the full run's sizes, or CI's quick ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    quick: bool
    repeats: int
    metric_calls: int
    artifact_sizes_mb: list[int]
    search_runs: list[int]  # one experiment per size: the cost curve
    search_queries: int
    memory_load_repeats: int
    cold_starts: int
    fixed_epochs: int
    fixed_sizes: dict
    marginal_epochs: int
    marginal_sizes: dict
    writer_counts: list[int]
    writer_seconds: float
    tracked_modes: tuple[str, ...]  # how the short fine-tune is tracked, beside untracked

    @classmethod
    def for_mode(cls, quick: bool) -> "Config":
        if quick:
            # Sizes for CI: every row of the full run, in about three minutes on 2 cores.
            return cls(quick=True, repeats=2, metric_calls=50, artifact_sizes_mb=[10], search_runs=[1000],
                       search_queries=5, memory_load_repeats=1, cold_starts=1, fixed_epochs=1,
                       fixed_sizes={"train": 64, "val": 32, "test": 32}, marginal_epochs=2,
                       marginal_sizes={"train": 200, "val": 64, "test": 64}, writer_counts=[1, 4], writer_seconds=5,
                       # Stock autolog costs about 15 s a run here (inferring pip requirements):
                       # the full run shows it; CI's short run keeps to the project's way.
                       tracked_modes=("project helpers",))
        return cls(quick=False, repeats=5, metric_calls=500, artifact_sizes_mb=[10, 200],
                   search_runs=[1000, 10_000, 100_000], search_queries=50, memory_load_repeats=3, cold_starts=3,
                   fixed_epochs=1,
                   fixed_sizes={"train": 64, "val": 32, "test": 32}, marginal_epochs=10,
                   marginal_sizes={"train": 2400, "val": 300, "test": 300}, writer_counts=[1, 4, 8, 16],
                   writer_seconds=30, tracked_modes=("stock autolog", "project helpers"))
