"""Writers against N MLflow servers behind nginx: one compose stack, scaled by start_mlflow.sh
to each N of MLFLOW_SERVER_REPLICAS in turn, with the same writers load at each
(benchmarks.writers: N client processes, each its own runs, every record read back).
Besides throughput and latency, the CPU each container used during the load, from its
cgroup: where the time went, and whether more servers had any core left to use.

    python -m benchmarks.server_replicas [--replicas 1 2 3] [--writers 8] [--seconds 20] [--rounds 2] [--json FILE]

Rounds go up and down (1 2 3, then 3 2 1), so that a machine getting busier or quieter
during the run does not favour one N; each figure is the median of its rounds, each round's
value beside it.

The stack is a fresh copy of this checkout (a compose project of its own, deleted after) on
the stand-in images the Docker tests use (tests/standin_images), or on the images an env
file names (--images mlflow_docker_setup/.env for the official ones, where a registry
answers). Needs a Docker engine; traffic stays on loopback and the stack's own network.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


from benchmarks.images import stack_images
from benchmarks.report import Row, machine, markdown, publish
from benchmarks.writers import rows as writer_rows
from benchmarks.writers import run_writers
from mlflow_stack.compose_stack import ComposeStack, docker



def cpu_seconds(container: str) -> float:
    """CPU time the container has used so far, from its cgroup (v1 or v2)."""
    full_id = docker("inspect", "-f", "{{.Id}}", container)
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{full_id}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{full_id}.scope/cpu.stat"),
               Path(f"/sys/fs/cgroup/docker/{full_id}/cpu.stat")):
        if v2.exists():
            usage = dict(line.split() for line in v2.read_text().splitlines())
            return int(usage["usage_usec"]) / 1e6
    raise RuntimeError(f"no cgroup CPU counter found for container {container}")


def service_containers(stack: ComposeStack) -> dict[str, str]:
    """A name per running container: mlflow-1, mlflow-2, ..., mysql, nginx, minio."""
    names = {}
    for service in ("mlflow", "mysql", "nginx", "minio"):
        containers = stack.containers(service)
        for number, container in enumerate(containers, start=1):
            names[f"{service}-{number}" if service == "mlflow" else service] = container
    return names


def measure(stack: ComposeStack, replicas: int, writers: int, seconds: float) -> list[Row]:
    """Scale the stack to ``replicas`` servers, run the writers, return its rows."""
    stack.env["MLFLOW_SERVER_REPLICAS"] = stack.env_overrides["MLFLOW_SERVER_REPLICAS"] = str(replicas)
    stack.start()
    containers = service_containers(stack)
    before = {name: cpu_seconds(c) for name, c in containers.items()}
    result = run_writers(stack.tracking_uri, writers, seconds)
    used = {name: cpu_seconds(c) - before[name] for name, c in containers.items()}
    # Per second of the load itself: the writers' start-up before it (imports, connecting)
    # asks the servers for next to nothing.
    wall = result.seconds
    group = f"{replicas} server{'s' if replicas > 1 else ''}"
    out = [Row(group, row.measure, row.value, row.unit, row.spread, row.goal, row.met)
           for row in writer_rows(result)]
    for name, cpu in used.items():
        out.append(Row(group, f"CPU of {name} during the load", 100 * cpu / wall, "% of a core",
                       f"{cpu:.1f} s in {wall:.0f} s"))
    out.append(Row(group, "CPU of all containers during the load", 100 * sum(used.values()) / wall, "% of a core",
                   f"the machine has {machine()['cpus']} cores"))
    return out


def combine(rounds: list[list[Row]]) -> list[Row]:
    """One row per measure: the median of its rounds (errors and losses: their sum)."""
    samples: dict[tuple[str, str], list[Row]] = {}
    for rows in rounds:
        for row in rows:
            samples.setdefault((row.group, row.measure), []).append(row)
    out = []
    for (group, measure), rows in sorted(samples.items(), key=lambda item: int(item[0][0].split()[0])):
        values = [row.value for row in rows]
        if rows[0].goal == "0":  # errors, records lost
            out.append(Row(group, measure, sum(values), rows[0].unit, " / ".join(row.spread for row in rows),
                           "0", sum(values) == 0, values))
        else:
            out.append(Row(group, measure, statistics.median(values), rows[0].unit,
                           " / ".join(f"{value:.3g}" for value in values), samples=values))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--writers", type=int, default=8, help="client processes logging at once")
    parser.add_argument("--seconds", type=float, default=20, help="how long each N is measured")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the Ns, up then down")
    parser.add_argument("--workers", default="2", help="MLFLOW_WORKERS of each server")
    parser.add_argument("--images", type=Path, help="an env file naming the images (default: the stand-ins)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    images = stack_images(args.images)
    order = [n for round_ in range(args.rounds) for n in sorted(args.replicas, reverse=round_ % 2 == 1)]
    rounds: list[list[Row]] = []
    with tempfile.TemporaryDirectory(prefix="replicas-bench-") as tmp:
        stack = ComposeStack.fresh_copy(Path(tmp) / "stack", images, MLFLOW_WORKERS=args.workers)
        try:
            for replicas in order:
                rounds.append(measure(stack, replicas, args.writers, args.seconds))
                print(markdown(rounds[-1]), flush=True)
        finally:
            stack.stop(delete_data=True)
    rows = combine(rounds)
    report = {"machine": machine(), "writers": args.writers,
              "seconds": args.seconds, "workers": args.workers, "order": order, "images": images,
              "rows": [row.__dict__ for row in rows]}
    publish(report, markdown(rows), f"{args.writers} writers for {args.seconds:g} s per N, order {order}", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
