"""The offline backbone, the metric list and prediction on raw strings."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch

from dl_model_tracking.model import (
    BERT_TINY_DIMENSIONS,
    build_classifier,
    build_offline_backbone,
    classification_metrics,
    predict_labels,
)


def test_offline_backbone_is_laid_out_like_bert_tiny_and_loads_by_path(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    backbone = build_offline_backbone(tmp_path / "bert-tiny", pretrain=False)
    assert sorted(p.name for p in backbone.iterdir()) == ["config.json", "pytorch_model.bin", "vocab.txt"]
    config = json.loads((backbone / "config.json").read_text())
    assert config["model_type"] == "bert"
    for key, value in BERT_TINY_DIMENSIONS.items():
        assert config[key] == value, key
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    assert tokenizer.tokenize("This is great news") == ["this", "is", "great", "news"]
    model = AutoModelForSequenceClassification.from_pretrained(str(backbone), num_labels=2)
    saved = torch.load(backbone / "pytorch_model.bin")
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved["bert.embeddings.word_embeddings.weight"])


def test_offline_backbone_built_with_the_same_settings_is_reused(tmp_path, capsys):
    backbone = build_offline_backbone(tmp_path / "bert-tiny", pretrain=False, seed=1)
    weights = backbone / "pytorch_model.bin"
    first = weights.read_bytes()
    weights.touch()
    built_at = weights.stat().st_mtime_ns
    build_offline_backbone(backbone, pretrain=False, seed=1)
    assert "Reusing the offline backbone" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == built_at
    # Other settings, or a build that never saved its recipe, are built again.
    build_offline_backbone(backbone, pretrain=False, seed=2)
    assert "Reusing" not in capsys.readouterr().out and weights.read_bytes() != first
    config = json.loads((backbone / "config.json").read_text())
    del config["offline_backbone_recipe"]
    (backbone / "config.json").write_text(json.dumps(config))
    build_offline_backbone(backbone, pretrain=False, seed=2)
    assert "Reusing" not in capsys.readouterr().out


def test_macro_averaged_metrics_differ_where_micro_ones_would_not():
    accuracy, f1, precision, recall = classification_metrics(num_classes=2)
    # 6 negatives and 2 positives; two false alarms and one missed positive.
    target = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    preds = torch.tensor([0, 0, 0, 0, 1, 1, 1, 0])
    values = {name: float(metric(preds, target)) for name, metric in
              {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}.items()}
    # Per class: precision 4/5 and 1/3, recall 4/6 and 1/2; macro means of those.
    assert values == pytest.approx({"accuracy": 7 / 12, "f1": (8 / 11 + 0.4) / 2,
                                    "precision": (4 / 5 + 1 / 3) / 2, "recall": 7 / 12}, abs=1e-4)
    assert len({round(v, 4) for v in values.values()}) == 3
    # Micro averaging would report 5/8 for all four.


@pytest.mark.parametrize("texts", [[], [1, 2], None])
def test_predicting_without_strings_is_refused(texts):
    with pytest.raises(ValueError, match="non-empty list of strings"):
        predict_labels(object(), texts)


def test_a_single_metric_is_taken_without_lightnings_hyperparameter_warning(tmp_path):
    import torchmetrics

    backbone = build_offline_backbone(tmp_path / "bert-tiny", pretrain=False)
    datamodule = SimpleNamespace(num_classes=2, labels=["negative", "positive"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_classifier(datamodule, backbone=backbone, metrics=torchmetrics.F1Score(num_classes=2))
    assert not [w for w in caught if "is an instance of `nn.Module`" in str(w.message)], caught
    assert list(model.val_metrics) == ["f1score"]
