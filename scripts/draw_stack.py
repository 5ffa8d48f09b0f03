"""The stack's diagram, docs/images/stack.png: who talks to whom, on which port, in the
default (loopback only) and the shared (MLFLOW_SHARE=1) mode.

    .venv/bin/python -m scripts.draw_stack [--output docs/images/stack.png]

Ports and addresses follow mlflow_docker_setup/docker-compose.yml and
docker-compose.share.yml; change the drawing with them. Same bytes on every run
(benchmarks.plot.write_png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.style
from matplotlib.patches import FancyBboxPatch

from benchmarks.plot import IMAGES, new_figure, write_png

SIZE_INCHES = (12.0, 10.0)  # 1200 x 1000 pixels
CLIENT, PROXY, SERVER, STORE = "#e8eef7", "#fdf1dc", "#e3f1e3", "#f1e6f4"


def region(axes, x, y, width, height, label, color="#777777") -> None:
    """A dashed frame (the host, the compose network) with its name in the top left corner."""
    axes.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0,rounding_size=1.5",
                                  facecolor="none", edgecolor=color, linestyle="--", linewidth=1.2))
    axes.text(x + 1, y + height - 1.2, label, ha="left", va="top", fontsize=8.5, color=color, style="italic")


def box(axes, x, y, width, height, title, body, color) -> None:
    axes.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0,rounding_size=1.2",
                                  facecolor=color, edgecolor="black", linewidth=1))
    axes.text(x + width / 2, y + height - 2, title, ha="center", va="top", fontsize=10, fontweight="bold")
    axes.text(x + width / 2, y + height - 8, body, ha="center", va="top", fontsize=7.5, linespacing=1.35)


def arrow(axes, start, end, label, at=0.5, dashed=False, offset=(0, 0)) -> None:
    """A connection from client to server, labelled with the port and what goes over it."""
    axes.annotate("", xy=end, xytext=start, arrowprops={
        "arrowstyle": "-|>", "color": "black", "linewidth": 1.3, "shrinkA": 0, "shrinkB": 0,
        "linestyle": (0, (4, 3)) if dashed else "-", "mutation_scale": 14})
    x = start[0] + (end[0] - start[0]) * at + offset[0]
    y = start[1] + (end[1] - start[1]) * at + offset[1]
    axes.text(x, y, label, ha="center", va="center", fontsize=7.5, linespacing=1.3,
              bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#999999", "linewidth": 0.6})


def stack_services(axes, mlflow_body: str, mysql_body: str, minio_body: str) -> None:
    """The compose network and its four long-running services, with the inner connections."""
    region(axes, 31, 2, 68, 88, "compose network (one project per checkout)")
    box(axes, 34, 56, 20, 26, "nginx", "proxy in front of MLflow:\ngzip, cache headers,\nlarge uploads, timeouts",
        PROXY)
    box(axes, 62, 50, 35, 34, "MLflow tracking server", mlflow_body, SERVER)
    box(axes, 34, 5, 24, 26, "MinIO", minio_body, STORE)
    box(axes, 73, 5, 24, 26, "MySQL", mysql_body, STORE)
    arrow(axes, (54, 69), (62, 69), "mlflow:5000\nnot published", offset=(0, 6))
    arrow(axes, (85, 50), (85, 31), "mysql:3306", at=0.45)
    arrow(axes, (68, 50), (54, 31), "minio:9000 (S3)\nproxied artifacts", at=0.5)


def default_mode(axes) -> None:
    axes.set_title("Default: every published port on 127.0.0.1 (loopback) only; no sign-in needed",
                   fontsize=11, loc="left")
    region(axes, 0.5, 2, 29, 88, "this machine (the host)")
    box(axes, 2, 40, 23, 30, "Client", "notebook, Python client\nor browser\n\ntracking URI\nhttp://localhost",
        CLIENT)
    stack_services(
        axes,
        "2 uvicorn workers, serve.sh's flags\n--serve-artifacts to s3://mlflow\n\nstack's server plugin: fast SQL\n"
        "store, TCP_NODELAY, streamed uploads,\nContent-Security-Policy, error answers",
        "backend store: runs, params,\nmetrics, tags, model registry\n\nnot published on the host",
        "artifact store, bucket mlflow\n(created by the one-shot\ncreate-bucket job)")
    arrow(axes, (25, 66), (34, 66), "127.0.0.1:80\nHTTP: UI\n+ REST API", at=0.5, offset=(0, 8))
    arrow(axes, (21, 40), (34, 24), "127.0.0.1:9001\nMinIO console\n(browser)", at=0.3, offset=(5, 4))
    arrow(axes, (12, 40), (34, 12), "127.0.0.1:9000 S3 API:\nthe book's way only\n(client holds S3 keys)",
          at=0.45, dashed=True, offset=(-3, -9))


def shared_mode(axes) -> None:
    axes.set_title("Shared (MLFLOW_SHARE=1): nginx on every interface with HTTPS and sign-in; "
                   "MinIO stays on loopback", fontsize=11, loc="left")
    box(axes, 2, 56, 23, 28, "Team", "notebooks, browsers\non the network\n\nhttps://<this machine>\n"
        "user + password", CLIENT)
    region(axes, 0.5, 2, 29, 46, "this machine (the host)")
    box(axes, 2, 8, 23, 28, "Client on the host", "browser: MinIO console\n\n(tracking through nginx\n"
        "like the team)", CLIENT)
    stack_services(
        axes,
        "as in default mode, plus MLflow's\nbasic-auth app (users, permissions);\nthe plugin brakes password guessing,\n"
        "refuses artifact locations of\nclients' own (no book's way)",
        "backend store, and the users\nand permissions in database\nmlflow_auth (one-shot\ncreate-auth-database job)",
        "artifact store, bucket mlflow\n\nports 9000 and 9001 still\non 127.0.0.1 only")
    arrow(axes, (25, 70), (34, 70), "0.0.0.0:443\nHTTPS (TLS)\n+ sign-in;\n0.0.0.0:80\nanswers 308\nto HTTPS",
          at=0.5, offset=(0, -11))
    arrow(axes, (25, 20), (34, 20), "127.0.0.1:9001\nconsole", at=0.5, offset=(0, 6))


def render(output: Path) -> Path:
    with matplotlib.style.context("default"):  # not the local matplotlibrc
        figure, panels = new_figure(2, 1, SIZE_INCHES)
        figure.suptitle("The Docker stack (start_mlflow.sh): services, published ports and connections",
                        fontsize=13, fontweight="bold")
        for axes, draw in zip(panels, (default_mode, shared_mode)):
            axes.set_xlim(0, 100)
            axes.set_ylim(0, 92)
            axes.set_axis_off()
            draw(axes)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_png(figure, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=IMAGES / "stack.png")
    print(render(parser.parse_args(argv).output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
