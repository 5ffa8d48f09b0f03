"""Pictures of the benchmark's figures for the README, drawn from its JSON reports:

    python -m benchmarks.plot [--input benchmarks/latest-full.json]
                              [--store-input benchmarks/latest-store.json] [--output-dir docs/images]

writes search-cost.png (search_runs p50/p95 against the runs in the experiment: through
nginx in the last full run and this round, and MLflow's store against the stack's in one
process), artifact-ratios.png (proxied artifacts against direct S3, and the book's way
against proxied) and writers-sweep.png (N writers at once: throughput and latency).
The same reports give the same bytes: fixed size and resolution, matplotlib's default
style whatever the local configuration, and no timestamp or software name in the files.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib.style
from matplotlib.figure import Figure

from benchmarks.config import Config
from mlflow_stack.settings import REPO_ROOT

FULL_REPORT = REPO_ROOT / "benchmarks" / "latest-full.json"
STORE_REPORT = REPO_ROOT / "benchmarks" / "latest-store.json"
IMAGES = REPO_ROOT / "docs" / "images"
SIZE_INCHES, DPI = (10.0, 4.8), 100  # 1000 x 480 pixels
STOCK, FAST = "tab:red", "tab:blue"  # MLflow's store, the stack's


def write_png(figure: Figure, path: Path) -> None:
    """The figure as a PNG whose bytes depend only on what was drawn."""
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def new_figure(rows: int, columns: int, size: tuple[float, float] = SIZE_INCHES) -> tuple[Figure, list]:
    """A figure of fixed size in pixels and its panels, in reading order."""
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    return figure, list(figure.subplots(rows, columns, squeeze=False).flat)


def load(path: Path) -> dict:
    report = json.loads(Path(path).read_text())
    report["name"] = Path(path).name
    report["config"] = Config.for_mode(report["mode"] == "quick")  # the sizes its mode measured
    return report


def about(report: dict) -> str:
    """Which run a picture shows: the report's file, mode and machine."""
    machine = report["machine"]
    return f"{report['name']}: {report['mode']} run, {machine['cpus']} cores, Python {machine['python']}"


def matching(report: dict, group: str, pattern: str) -> list[tuple[tuple[str, ...], dict]]:
    """The group's rows whose measure matches, with the pattern's groups; a report without
    any is an error (a picture without its data would pass unnoticed)."""
    found = []
    for row in report["rows"]:
        match = re.fullmatch(pattern, row["measure"])
        if row["group"] == group and match:
            found.append((match.groups(), row))
    if not found:
        raise ValueError(f"{report['name']} has no rows of group {group!r} matching {pattern!r}")
    return found


def runs(text: str) -> int:
    return int(text.replace(",", ""))


# -- search: its cost against the experiment's size ----------------------------------------------
NGINX_SEARCH = r"search_runs.*?, ([\d,]+) runs x .*: (p50|p95)"
STORE_SEARCH = r"search_runs, ([\d,]+) runs, (stock|fast) store: (p50|p95)"


def search_curves(report: dict, group: str, pattern: str) -> dict[tuple[str, ...], list[tuple[int, float]]]:
    """(side..., percentile) -> (runs, ms) points, MLflow's store before the stack's."""
    curves: dict[tuple[str, ...], list[tuple[int, float]]] = {}
    for (count, *key), row in matching(report, group, pattern):
        curves.setdefault(tuple(key), []).append((runs(count), row["value"]))
    order = {"stock": 0, "fast": 1}
    return {key: sorted(curves[key]) for key in sorted(curves, key=lambda k: (order.get(k[0], 0), k))}


def p95_goals(report: dict) -> list[tuple[int, float]]:
    return sorted((runs(count), number(row["goal"]))
                  for (count, _), row in matching(report, "search", NGINX_SEARCH) if row["goal"])


def number(goal: str) -> float:
    """The figure in a goal such as "<= 250 ms" or ">= 0.5"."""
    return float(re.search(r"[\d.]+", goal).group())


def draw_curves(axes, curves: dict, color: str | None, label_of) -> None:
    for key, points in curves.items():
        xs, ys = zip(*points)
        p95 = key[-1] == "p95"
        axes.plot(xs, ys, marker="o" if p95 else "s", linestyle="--" if p95 else "-",
                  color=color or (STOCK if key[0] == "stock" else FAST), label=label_of(key))


def search_cost(full: dict, store: dict) -> Figure:
    figure, (through_nginx, in_process) = new_figure(1, 2)
    figure.suptitle(f"search_runs (metric filter, order by a metric, 100 runs returned), "
                    f"{store['config'].search_queries} searches per experiment size\n{about(store)}", fontsize=10)
    draw_curves(through_nginx, search_curves(full, "search", NGINX_SEARCH), STOCK,
                lambda key: f"last full run, MLflow's store: {key[0]} ({full['name']})")
    draw_curves(through_nginx, search_curves(store, "search", NGINX_SEARCH), FAST,
                lambda key: f"this round, stack's store: {key[0]} ({store['name']})")
    goals = p95_goals(store)
    if goals:
        through_nginx.plot(*zip(*goals), linestyle="none", marker="_", markersize=18, markeredgewidth=2.5,
                           color="black", label="p95 goal")
    through_nginx.set_title("Client through nginx to the twin (group search): two runs,\n"
                            "days apart (this round also turned Nagle off, kept nginx's connections)", fontsize=9)
    draw_curves(in_process, search_curves(store, "store", STORE_SEARCH), None,
                lambda key: f"{'MLflow' if key[0] == 'stock' else 'the stack'}'s store: {key[1]}")
    in_process.set_title("The two stores in one process on the twin's MariaDB, no HTTP\n"
                         f"(group store), interleaved in one run ({store['name']})", fontsize=9)
    for axes in (through_nginx, in_process):
        axes.set_xscale("log")
        sizes = sorted({x for line in axes.get_lines() for x in line.get_xdata()})
        axes.set_xticks(sizes, [f"{size:,.0f}" for size in sizes])
        axes.set_xlabel("runs in the experiment (10 params, 10 metrics, 5 tags each)")
        axes.set_ylabel("search_runs latency (ms)")
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7.5, loc="upper left")
    return figure


# -- artifacts: proxied against direct S3 ----------------------------------------------------------
ARTIFACT_RATIO = r"(\d+) MB (upload|download): (proxy / direct|book's way / proxy)"
RATIO_LABELS = {"proxy / direct": "proxied (nginx + MLflow) / direct S3 (boto3)",
                "book's way / proxy": "book's way (MLflow client straight to S3) / proxied"}


def artifact_ratios(full: dict) -> Figure:
    figure, (axes,) = new_figure(1, 1)
    found = matching(full, "artifacts", ARTIFACT_RATIO)
    cases = sorted({(int(size), direction) for (size, direction, _), _ in found}, key=lambda c: (c[0], c[1] != "upload"))
    width = 0.38
    for offset, (kind, color) in zip((-width / 2, width / 2), (("proxy / direct", FAST), ("book's way / proxy", "tab:gray"))):
        rows = {(int(size), direction): row for (size, direction, k), row in found if k == kind}
        shown = [(index + offset, rows[case]) for index, case in enumerate(cases) if case in rows]
        xs, values = [x for x, _ in shown], [row["value"] for _, row in shown]
        whiskers = [[row["value"] - min(row["samples"]) for _, row in shown],
                    [max(row["samples"]) - row["value"] for _, row in shown]]
        axes.bar(xs, values, width, color=color, label=RATIO_LABELS[kind], yerr=whiskers, capsize=3,
                 error_kw={"elinewidth": 1, "ecolor": "black"})
        for x, value in zip(xs, values):
            axes.text(x, 0.03, f"{value:.2f}", ha="center", va="bottom", color="white", fontweight="bold", fontsize=9)
        goals = [(x, number(row["goal"])) for x, row in shown if row["goal"]]
        for x, goal in goals:
            axes.hlines(goal, x - width / 2, x + width / 2, colors="black", linestyles="--", linewidth=1.5,
                        label=f"goal for {kind}" if (x, goal) == goals[0] else None)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(cases)), [f"{size} MB {direction}" for size, direction in cases])
    axes.set_ylabel("speed ratio (median of paired rounds)")
    axes.set_ylim(bottom=0)
    rounds = len(found[0][1]["samples"])
    axes.set_title("Artifacts through the stack (nginx, then MLflow's proxy) against S3 directly, on the twin "
                   f"(group artifacts)\nbars: median, whiskers: min to max of {rounds} interleaved rounds; "
                   f"{about(full)}", fontsize=10)
    axes.grid(True, axis="y", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=3, fontsize=8)
    return figure


# -- writers: N clients at once ------------------------------------------------------------------
WRITERS = r"(\d+) writers?: (calls/s|records/s|call latency p50|call latency p95|errors|records lost)"


def writers_sweep(full: dict) -> Figure:
    figure, (throughput, latency) = new_figure(1, 2)
    measured: dict[str, list[tuple[int, float]]] = {}
    for (writers, measure), row in matching(full, "writers", WRITERS):
        measured.setdefault(measure, []).append((int(writers), row["value"]))
    measured = {measure: sorted(points) for measure, points in measured.items()}
    for axes, measures in ((throughput, ("calls/s", "records/s")), (latency, ("call latency p50", "call latency p95"))):
        for measure, marker in zip(measures, ("o", "s")):
            if measure in measured:
                axes.plot(*zip(*measured[measure]), marker=marker, label=measure)
        axes.set_xscale("log", base=2)
        xs = sorted({n for points in measured.values() for n, _ in points})
        axes.set_xticks(xs, [str(n) for n in xs])
        axes.set_xlabel("writers logging at once (client processes, through nginx)")
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="upper left")
    throughput.set_ylabel("per second, all writers together")
    throughput.set_title("Throughput: MLflow calls, and records logged by them\n"
                         "(runs, params, tags, metric points, artifacts)", fontsize=9)
    latency.set_ylabel("latency of one call (ms)")
    latency.set_title("Latency of each call, as the writer saw it", fontsize=9)
    failures = ", ".join(f"{n}: {errors:.0f} / {lost:.0f}" for (n, errors), (_, lost)
                         in zip(measured.get("errors", []), measured.get("records lost", [])))
    figure.suptitle(f"Many writers at once on the twin (group writers), {full['config'].writer_seconds:.0f} s per N; "
                    f"{about(full)}\nerrors / records lost per N: {failures}", fontsize=10)
    return figure


CHARTS = {"search-cost.png": search_cost,
          "artifact-ratios.png": lambda full, store: artifact_ratios(full),
          "writers-sweep.png": lambda full, store: writers_sweep(full)}


def render(full_path: Path, store_path: Path, output_dir: Path) -> list[Path]:
    full, store = load(full_path), load(store_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.style.context("default"):  # not the local matplotlibrc
        for name, draw in CHARTS.items():
            write_png(draw(full, store), output_dir / name)
            written.append(output_dir / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=FULL_REPORT, help="the full run's report (all groups)")
    parser.add_argument("--store-input", type=Path, default=STORE_REPORT,
                        help="the report with the search and store groups of this round")
    parser.add_argument("--output-dir", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    for path in render(args.input, args.store_input, args.output_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
