"""Training runs that log to the tracking server, run as child processes while a service of
the stack is taken down (benchmarks.outage_harness).

    python -m benchmarks.training_workloads hand --experiment-id 1 --status s.json --until stop
    python -m benchmarks.training_workloads autolog --experiment-id 1 --status s.json \\
        --until stop --backbone DIR --data-dir DIR

Each logs until the file named by ``--until`` exists (or its step or epoch limit), so the
harness decides when training ends, after the outage. Each writes its status file twice: once logging has begun (``phase: logging``), and at the
end with what it sent and how it ended: ``finished``, ``error`` (the one line of
:class:`~mlflow_stack.connection.ServiceDown`) or ``crash`` (any other exception).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path

import mlflow

from mlflow_stack.connection import ServiceDown, explain_outages

HAND_METRIC = "loss"


def write_status(path: Path, **status) -> None:
    """Whole files only: the harness may read while this writes."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(status))
    partial.replace(path)


def log_by_hand(sent: dict, experiment_id: str, status: Path, until: Path, steps: int,
                interval: float, checkpoint_every: int) -> None:
    """A metric every step; a param, a tag and a small artifact at every checkpoint, and an
    artifact at the end. ``sent`` notes what the server accepted, kept when a call fails."""
    with mlflow.start_run(experiment_id=experiment_id) as run, explain_outages():
        mlflow.log_params({"steps": steps, "interval": interval})
        mlflow.set_tag("workload", "hand")
        sent["params"] += ["steps", "interval"]
        write_status(status, run_id=run.info.run_id, phase="logging")
        for step in range(steps):
            if until.exists():
                break
            mlflow.log_metric(HAND_METRIC, math.exp(-step / steps), step=step)
            sent["metrics"] += 1
            if step % checkpoint_every == 0:
                mlflow.log_param(f"checkpoint_{step}", step)
                sent["params"].append(f"checkpoint_{step}")
                mlflow.set_tag("last_checkpoint", str(step))
                sent["tags"]["last_checkpoint"] = str(step)
                mlflow.log_text(f"state at step {step}\n", f"checkpoints/step-{step}.txt")
                sent["artifacts"].append(f"checkpoints/step-{step}.txt")
            time.sleep(interval)
        mlflow.log_text("finished\n", "summary.txt")
        sent["artifacts"].append("summary.txt")


def train_with_autolog(sent: dict, experiment_id: str, status: Path, until: Path, backbone: str,
                       data_dir: str, epochs: int, pace: float) -> None:
    """The chapter's fine-tune with autolog logging every step, for up to ``epochs`` epochs;
    each step takes at least ``pace`` seconds, which keeps the step count of a long outage small."""
    import flash
    import pytorch_lightning as pl

    from dl_model_tracking.data import load_imdb
    from dl_model_tracking.model import build_classifier
    from dl_model_tracking.tracking import pinned_model_requirements

    class Pacing(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            sent["metrics"] += 1  # autolog logs the step's metrics on every step
            if sent["metrics"] == 1:
                write_status(status, run_id=mlflow.active_run().info.run_id, phase="logging")
            time.sleep(pace)
            trainer.should_stop = until.exists()

    datamodule = load_imdb(data_dir, batch_size=32)
    model = build_classifier(datamodule, backbone=backbone)
    trainer = flash.Trainer(max_epochs=epochs, callbacks=[Pacing()], enable_progress_bar=False,
                            enable_checkpointing=False)
    mlflow.pytorch.autolog(log_every_n_step=1)
    with mlflow.start_run(experiment_id=experiment_id), explain_outages(), \
            pinned_model_requirements():
        trainer.finetune(model, datamodule=datamodule, strategy="freeze")
    sent["artifacts"].append("model")  # autolog's, logged as training ends


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["hand", "autolog"])
    parser.add_argument("--experiment-id", required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--until", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--backbone")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.3)
    args = parser.parse_args(argv)
    started = time.monotonic()
    sent = {"metrics": 0, "params": [], "tags": {}, "artifacts": []}
    try:
        if args.workload == "hand":
            log_by_hand(sent, args.experiment_id, args.status, args.until, args.steps, args.interval,
                        args.checkpoint_every)
        else:
            train_with_autolog(sent, args.experiment_id, args.status, args.until, args.backbone, args.data_dir,
                               args.epochs, args.pace)
        outcome, error = "finished", None
    except ServiceDown as down:
        outcome, error = "error", str(down)
    except Exception:
        outcome, error = "crash", traceback.format_exc(limit=5)
    previous = json.loads(args.status.read_text()) if args.status.exists() else {}
    write_status(args.status, **previous, sent=sent, outcome=outcome, error=error,
                 seconds=round(time.monotonic() - started, 1))


if __name__ == "__main__":
    main()
