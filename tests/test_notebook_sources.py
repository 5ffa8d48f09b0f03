"""The notebooks as committed: they teach MLflow's API in the chapter's order and carry no outputs."""

from __future__ import annotations

import json

import pytest

from mlflow_stack.settings import REPO_ROOT

# The calls chapter 3 teaches, in its order, per notebook.
CHAPTER_CALLS = {
    "dl_model_tracking.ipynb": ["mlflow.set_tracking_uri", "mlflow.set_experiment", "mlflow.pytorch.autolog",
                                "mlflow.start_run", "mlflow.pytorch.load_model", "mlflow.register_model"],
    "dl_model-non-auto-tracking.ipynb": ["mlflow.set_tracking_uri", "mlflow.set_experiment", "mlflow.start_run",
                                         "mlflow.log_metrics", "mlflow.log_params", "mlflow.log_text",
                                         "mlflow.pytorch.log_model", "registered_model_name"],
}


def cells(name: str) -> list[dict]:
    notebook = json.loads((REPO_ROOT / "notebooks" / name).read_text())
    return [{"type": c["cell_type"], "source": "".join(c["source"]), "outputs": c.get("outputs", []),
             "count": c.get("execution_count")} for c in notebook["cells"]]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb")))
def test_notebooks_are_committed_without_outputs(name):
    code = [c for c in cells(name) if c["type"] == "code"]
    assert code and all(not c["outputs"] and c["count"] is None for c in code), \
        f"clear the outputs of {name} before committing"


@pytest.mark.parametrize("name", sorted(CHAPTER_CALLS))
def test_the_chapters_calls_are_in_cells_in_its_order_each_explained_before(name):
    notebook = cells(name)
    code = "\n".join(c["source"] for c in notebook if c["type"] == "code")
    positions = [code.find(call) for call in CHAPTER_CALLS[name]]
    missing = [call for call, at in zip(CHAPTER_CALLS[name], positions) if at < 0]
    assert not missing, f"{name} does not show {missing} in a cell"
    assert positions == sorted(positions), f"{name} shows the chapter's calls out of its order"
    for call in CHAPTER_CALLS[name]:
        first = next(i for i, c in enumerate(notebook) if c["type"] == "code" and call in c["source"])
        explained = any(f"`{call}" in c["source"] for c in notebook[:first] if c["type"] == "markdown")
        assert explained, f"{name}: no text before the cell that calls {call} says what it does"


@pytest.mark.parametrize("name", sorted(CHAPTER_CALLS))
def test_the_experiment_is_marked_as_model_training_and_its_links_open_that_view(name):
    code = "\n".join(c["source"] for c in cells(name) if c["type"] == "code")
    assert 'mlflow.set_experiment_tag("mlflow.experimentKind", "custom_model_development")' in code
    # Links from dl_model_tracking.ui_links carry the view; a hand-written "#/..." would not.
    assert "#/" not in code
    assert all(f"{helper}(" in code for helper in ("experiment_url", "run_url", "model_version_url"))
