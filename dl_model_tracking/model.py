"""The chapter's text classifier, its metrics, and an offline stand-in for its backbone."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

DEFAULT_BACKBONE = "prajjwal1/bert-tiny"
# prajjwal1/bert-tiny's shape (its config.json on the hub).
BERT_TINY_DIMENSIONS = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=512, max_position_embeddings=512)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
OFFLINE_RECIPE_KEY = "offline_backbone_recipe"


def classification_metrics(num_classes: int, average: str = "macro"):
    """Accuracy, F1, precision and recall.

    torchmetrics' defaults average over all samples ("micro"), which for single-label
    classification makes all four the same number; macro averaging gives each class
    equal weight, so they differ whenever the classes are treated differently.
    """
    import torchmetrics

    return [
        torchmetrics.Accuracy(num_classes=num_classes, average=average),
        torchmetrics.F1Score(num_classes=num_classes, average=average),
        torchmetrics.Precision(num_classes=num_classes, average=average),
        torchmetrics.Recall(num_classes=num_classes, average=average),
    ]


def build_classifier(datamodule, backbone: str = DEFAULT_BACKBONE, metrics=None,
                     learning_rate: float | None = None):
    """``TextClassifier(backbone=..., num_classes=datamodule.num_classes)`` as in the chapter.

    The datamodule's label names go into the model too, so that it, and any copy loaded
    back from MLflow, predicts ``"positive"`` rather than ``1``.
    """
    from flash.text import TextClassifier

    from .quiet import expected_new_head

    kwargs = {"backbone": str(backbone), "num_classes": datamodule.num_classes,
              "labels": datamodule.labels}
    if metrics is not None:
        # One metric goes in as a list of one, the same to flash: a bare module among the
        # hyperparameters makes Lightning warn that it would be saved twice.
        kwargs["metrics"] = metrics if isinstance(metrics, (list, tuple, dict)) else [metrics]
    if learning_rate is not None:
        kwargs["learning_rate"] = learning_rate
    with expected_new_head():
        return TextClassifier(**kwargs)


def predict_labels(model, texts: list[str], batch_size: int = 32) -> list[str]:
    """Class labels for raw strings, from a trained or loaded ``TextClassifier``.

    ``Task.predict`` is gone from lightning-flash 0.8; prediction goes through a
    ``flash.Trainer`` and a datamodule built from the strings.
    """
    import flash
    from flash.text import TextClassificationData

    from .data import datamodule_options

    if isinstance(texts, str):
        texts = [texts]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("predict_labels needs a non-empty list of strings")
    datamodule = TextClassificationData.from_lists(predict_data=list(texts), **datamodule_options(batch_size))
    trainer = flash.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    # Predicting attaches this short-lived trainer to the model; a dead reference to it
    # left behind would make pickling the model (mlflow.pytorch.log_model) fail later.
    previous_trainer = model._trainer
    try:
        batches = trainer.predict(model, datamodule=datamodule, output="labels")
    finally:
        model.trainer = previous_trainer
    return [label for batch in batches for label in batch]


def build_offline_backbone(dest: str | Path, pretrain: bool = True, seed: int = 13) -> Path:
    """Write a backbone directory laid out like ``prajjwal1/bert-tiny`` on the hub.

    ``config.json`` (BERT with bert-tiny's dimensions), ``pytorch_model.bin`` and
    ``vocab.txt`` (the offline sample's words), so ``TextClassifier(backbone=<dir>)``
    loads it through the same ``from_pretrained`` path as the real one. A randomly
    initialised encoder gives a frozen backbone nothing to build on, so by default the
    encoder is first trained briefly on generated reviews (another seed than the sample
    the tests train and score on), standing in for bert-tiny's pre-training.

    A directory already built with the same settings is reused as it is.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from .data import _review, sample_vocabulary

    dest = Path(dest)
    vocab = SPECIAL_TOKENS + sample_vocabulary()
    # How this directory is built; kept in config.json (transformers ignores the extra
    # key) once the weights are saved, so an interrupted build is never reused.
    recipe = {"seed": seed, "pretrain": pretrain,
              "vocabulary_sha256": hashlib.sha256("\n".join(vocab).encode()).hexdigest()}
    if _built_recipe(dest) == recipe and (dest / "pytorch_model.bin").is_file():
        print(f"Reusing the offline backbone in {dest} (built earlier with the same settings)", flush=True)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    # transformers 5 would save only tokenizer.json; the hub layout has vocab.txt.
    (dest / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(vocab), **BERT_TINY_DIMENSIONS)
    config.architectures = ["BertModel"]
    config_dict = json.loads(config.to_json_string())
    _write_config(dest, config_dict)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    if pretrain:
        # The tokenizer flash will build from this directory, built the same way here.
        tokenizer = AutoTokenizer.from_pretrained(str(dest))
        print(f"Pre-training the offline backbone in {dest} (about two minutes on 2 cores)", flush=True)
        _pretrain(model, tokenizer, random.Random(seed), _review)
    encoder = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("bert.")}
    torch.save(encoder, dest / "pytorch_model.bin")
    _write_config(dest, {**config_dict, OFFLINE_RECIPE_KEY: recipe})
    return dest


def _write_config(dest: Path, config: dict) -> None:
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _built_recipe(dest: Path) -> dict | None:
    try:
        return json.loads((dest / "config.json").read_text()).get(OFFLINE_RECIPE_KEY)
    except (OSError, ValueError):
        return None


def _pretrain(model, tokenizer, rng: random.Random, make_review, steps: int = 300, batch_size: int = 32):
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(1, steps + 1):
        labels = [rng.random() < 0.5 for _ in range(batch_size)]
        batch = tokenizer([make_review(rng, positive) for positive in labels], padding=True,
                          truncation=True, max_length=64, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([int(p) for p in labels])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps:
            print(f"  step {step}/{steps}, loss {loss.item():.3f}", flush=True)
    model.eval()
