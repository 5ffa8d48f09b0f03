"""The Open Provenance Model graph of a report: artifacts, processes, agents and their edges."""

from __future__ import annotations

from pathlib import Path


def opm_graph(report: dict) -> dict:
    """Artifacts, processes and agents of this version, and the causal edges between them."""
    nodes, edges = [], []

    def node(node_id: str, kind: str, label: str) -> str:
        nodes.append({"id": node_id, "kind": kind, "label": label})
        return node_id

    def edge(source: str, relation: str, target: str) -> None:
        edges.append({"from": source, "relation": relation, "to": target})

    how, where, who, what = report["how"], report["where"], report["who"], report["what"]
    version_label = f"{what['name']} v{what['version']}"
    model_version = node("artifact:model_version", "artifact", version_label)
    if how["run_id"]:
        training = node("process:training_run", "process",
                        f"training run {how['run_name'] or ''} ({how['run_state']})".strip())
        if who["trained_by"]:
            edge(training, "wasControlledBy", node(f"agent:{who['trained_by']}", "agent", who["trained_by"]))
        for dataset in where["data"]:
            data_node = node(f"artifact:data:{dataset['name']}", "artifact",
                             f"{dataset['name']} ({dataset.get('rows', '?')} rows, {dataset['digest']})")
            edge(training, "used", data_node)
        if where["backbone"]:
            edge(training, "used", node("artifact:backbone", "artifact",
                                        f"backbone {Path(where['backbone']).name}"))
        if where["code_commit"]:
            edge(training, "used", node("artifact:code", "artifact", f"code {where['code_commit'][:10]}"))
        if how["environment"]:
            edge(training, "used", node("artifact:environment", "artifact",
                                        "environment " + ", ".join(f"{k} {v}" for k, v in how["environment"].items()
                                                                   if k in ("python", "torch", "mlflow"))))
        logged = node("artifact:logged_model", "artifact", f"logged model {what['logged_model_id'] or what['source']}")
        edge(logged, "wasGeneratedBy", training)
        registration = node("process:registration", "process", "registration")
        edge(registration, "used", logged)
        edge(model_version, "wasGeneratedBy", registration)
        edge(model_version, "wasDerivedFrom", logged)
        if who["registered_by"]:
            agent = f"agent:{who['registered_by']}"
            if agent not in {n["id"] for n in nodes}:
                node(agent, "agent", who["registered_by"])
            edge(registration, "wasControlledBy", agent)
    for index, event in enumerate(who["promoted_by"]):
        target = event.get("alias") or event.get("stage") or "archive"
        process = node(f"process:lifecycle:{index}", "process", f"{event['action']} {target} ({event['at'][:10]})")
        edge(process, "used", model_version)
        agent = f"agent:{event['by']}"
        if agent not in {n["id"] for n in nodes}:
            node(agent, "agent", event["by"])
        edge(process, "wasControlledBy", agent)
    return {"model": version_label, "nodes": nodes, "edges": edges}


def render_graph_png(graph: dict, path: str | Path) -> Path:
    """Draw the OPM graph: artifacts as ellipses, processes as boxes, agents as octagon-ish."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = {"agent": 0, "input": 1, "process": 2, "output": 3}

    def column(n: dict) -> int:
        if n["kind"] == "agent":
            return columns["agent"]
        if n["kind"] == "process":
            return columns["process"]
        generated = any(e["from"] == n["id"] and e["relation"] in ("wasGeneratedBy", "wasDerivedFrom")
                        for e in graph["edges"])
        return columns["output"] if generated or n["id"] == "artifact:model_version" else columns["input"]

    by_column: dict[int, list[dict]] = {}
    for n in graph["nodes"]:
        by_column.setdefault(column(n), []).append(n)
    positions = {}
    for col, members in by_column.items():
        for row, n in enumerate(members):
            positions[n["id"]] = (col * 4.2, -(row - (len(members) - 1) / 2) * 1.6)
    height = max(len(m) for m in by_column.values()) * 1.6 + 1.5
    figure, axes = plt.subplots(figsize=(17, max(4.5, height)))
    styles = {"artifact": dict(boxstyle="round,pad=0.5,rounding_size=0.8", fc="#fff4d6", ec="#b8860b"),
              "process": dict(boxstyle="square,pad=0.5", fc="#dbe9ff", ec="#1f4e9c"),
              "agent": dict(boxstyle="sawtooth,pad=0.5", fc="#e6f5e6", ec="#2e7d32")}
    for e in graph["edges"]:
        (x1, y1), (x2, y2) = positions[e["from"]], positions[e["to"]]
        axes.annotate("", xy=(x2, y2), xytext=(x1, y1),
                      arrowprops=dict(arrowstyle="-|>", color="#555", shrinkA=38, shrinkB=38, lw=1.2))
        axes.text((x1 + x2) / 2, (y1 + y2) / 2, e["relation"], fontsize=7, color="#444", ha="center",
                  bbox=dict(fc="white", ec="none", alpha=0.8, pad=0.5))
    for n in graph["nodes"]:
        x, y = positions[n["id"]]
        label = n["label"] if len(n["label"]) <= 44 else n["label"][:41] + "..."
        axes.text(x, y, label, ha="center", va="center", fontsize=8, bbox=styles[n["kind"]])
    axes.set_xlim(-2.5, 3 * 4.2 + 2.5)
    axes.set_ylim(-height / 2, height / 2)
    axes.axis("off")
    axes.set_title(f"Open Provenance Model graph of {graph['model']}  "
                   "(ellipses: artifacts, boxes: processes, jagged: agents)", fontsize=11)
    path = Path(path)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
