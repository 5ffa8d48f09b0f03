"""The chapter's IMDB reviews, and an offline sample laid out exactly like them.

The real data is the zip the chapter downloads into ``./data/``: ``imdb/train.csv``,
``imdb/valid.csv`` and ``imdb/test.csv``, each with the columns ``review`` and
``sentiment`` (``positive`` / ``negative``). :func:`write_sample_dataset` writes the same
three files from a seeded generator, so tests and offline readers go through the very
same loading path without the internet.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

IMDB_URL = "https://pl-flash-data.s3.amazonaws.com/imdb.zip"
SPLIT_FILES = {"train": "train.csv", "val": "valid.csv", "test": "test.csv"}
INPUT_FIELD = "review"
TARGET_FIELD = "sentiment"
# Beside the CSVs: the URL they were downloaded from, or how they were generated.
SOURCE_FILE = "SOURCE"


@dataclass(frozen=True)
class ImdbFiles:
    train: Path
    val: Path
    test: Path
    source_url: str

    def as_dict(self) -> dict[str, Path]:
        return {"train": self.train, "val": self.val, "test": self.test}


def imdb_files(data_dir: str | Path) -> ImdbFiles:
    """The three CSVs under ``data_dir/imdb`` and where they came from.

    The origin is what was noted in ``imdb/SOURCE`` when the files were downloaded or
    generated; files put there by hand are their own source.
    """
    folder = Path(data_dir) / "imdb"
    marker = folder / SOURCE_FILE
    source = marker.read_text().strip() if marker.exists() else str(folder.resolve())
    return ImdbFiles(**{split: folder / name for split, name in SPLIT_FILES.items()}, source_url=source)


def ensure_imdb(data_dir: str | Path, url: str = IMDB_URL) -> ImdbFiles:
    """Download and unzip the IMDB data into ``data_dir`` unless its CSVs are there."""
    files = imdb_files(data_dir)
    missing = [path for path in files.as_dict().values() if not path.exists()]
    if missing:
        from flash.core.data.utils import download_data

        try:
            download_data(url, str(data_dir))
        except Exception as error:  # requests, zipfile and OS errors alike
            raise RuntimeError(
                f"Could not download the IMDB data from {url} into {data_dir} ({error}). "
                "Without internet, write the offline sample instead: "
                "dl_model_tracking.data.write_sample_dataset(data_dir)"
            ) from error
        still_missing = [str(p) for p in files.as_dict().values() if not p.exists()]
        if still_missing:
            raise RuntimeError(f"{url} did not contain the expected files: {', '.join(still_missing)}")
        (files.train.parent / SOURCE_FILE).write_text(url + "\n")
        files = imdb_files(data_dir)
    return files


def load_imdb(data_dir: str | Path, batch_size: int = 32, url: str = IMDB_URL):
    """The chapter's datamodule: ``TextClassificationData.from_csv("review", "sentiment", ...)``."""
    from flash.text import TextClassificationData

    files = ensure_imdb(data_dir, url)
    datamodule = TextClassificationData.from_csv(
        INPUT_FIELD,
        TARGET_FIELD,
        train_file=str(files.train),
        val_file=str(files.val),
        test_file=str(files.test),
        **datamodule_options(batch_size),
    )
    # Remembered for provenance: which files this datamodule was built from.
    datamodule.imdb_files = files
    return datamodule


def datamodule_options(batch_size: int) -> dict:
    """What every flash datamodule here is built with, besides its data.

    An ``InputTransform`` instance, as flash 0.8 wants (passing the class, its default,
    is deprecated), and pinned memory only where there is an accelerator to copy to
    (flash pins by default, and torch warns about it on a CPU-only machine).
    """
    import torch
    from flash.core.data.io.input_transform import InputTransform

    return {"transform": InputTransform(), "pin_memory": torch.accelerator.is_available(), "batch_size": batch_size}


def read_split(path: str | Path) -> tuple[list[str], list[str]]:
    """Reviews and their sentiment labels from one of the CSVs."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row[INPUT_FIELD] for row in rows], [row[TARGET_FIELD] for row in rows]


# -- the offline sample ------------------------------------------------------------------
_POSITIVE = [
    "great", "wonderful", "brilliant", "excellent", "moving", "delightful", "superb",
    "charming", "fantastic", "beautiful", "gripping", "memorable", "funny", "touching",
    "masterful", "good", "enjoyable", "stunning", "clever", "heartfelt",
]
_NEGATIVE = [
    "awful", "boring", "terrible", "dull", "painful", "weak", "clumsy", "bad",
    "tedious", "lifeless", "predictable", "horrible", "poor", "forgettable", "silly",
    "messy", "annoying", "bland", "disappointing", "waste",
]
_SUBJECTS = [
    "the acting", "the plot", "the story", "the ending", "the script", "the cast",
    "the soundtrack", "the direction", "this film", "this movie", "the dialogue",
    "the camera work", "the pacing", "the lead", "this news", "the premiere",
]
_NEUTRAL = [
    "i saw it on a sunday with friends.", "it runs for about two hours.",
    "the film is based on a novel.", "it was shown at a festival last year.",
    "my brother recommended it to me.", "the trailer came out in spring.",
    "it is set in a small town.", "there is a sequel planned.",
]
_TEMPLATES = [
    "{s} was {w}.", "{s} is {w}.", "this is {w} news for fans.", "honestly, {s} felt {w}.",
    "what a {w} experience.", "i found {s} {w} and {w2}.", "{s} was {w}, really {w2}.",
]


def _review(rng: random.Random, positive: bool) -> str:
    own, other = (_POSITIVE, _NEGATIVE) if positive else (_NEGATIVE, _POSITIVE)
    sentences = []
    for _ in range(rng.randint(2, 4)):
        # One sentence in eight carries the opposite sentiment, so the task is not trivial.
        words = other if rng.random() < 1 / 8 else own
        template = rng.choice(_TEMPLATES)
        sentences.append(template.format(s=rng.choice(_SUBJECTS), w=rng.choice(words), w2=rng.choice(words)))
    for _ in range(rng.randint(0, 2)):
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(_NEUTRAL))
    text = " ".join(sentences)
    return text[0].upper() + text[1:]


def sample_vocabulary() -> list[str]:
    """Every word the sample generator can write (plus the chapter's example sentence)."""
    words = set("this is great news".split())
    for phrase in _POSITIVE + _NEGATIVE + _SUBJECTS + _NEUTRAL + _TEMPLATES:
        for token in phrase.replace("{s}", "").replace("{w}", "").replace("{w2}", "").split():
            words.update(_split_punctuation(token.lower()))
    return sorted(w for w in words if w)


def _split_punctuation(token: str) -> list[str]:
    return [part for part in token.replace(".", " . ").replace(",", " , ").split()]


def write_sample_dataset(data_dir: str | Path, sizes: dict[str, int] | None = None,
                         seed: int = 7) -> ImdbFiles:
    """Write balanced synthetic reviews as ``imdb/{train,valid,test}.csv`` under ``data_dir``.

    Files already generated with the same seed and sizes are reused as they are.
    """
    sizes = sizes or {"train": 1200, "val": 300, "test": 300}
    folder = Path(data_dir) / "imdb"
    origin = f"generated by dl_model_tracking.data.write_sample_dataset(seed={seed}, sizes={sizes})"
    files = imdb_files(data_dir)
    if files.source_url == origin and all(path.exists() for path in files.as_dict().values()):
        print(f"Reusing the sample reviews in {folder} (generated earlier with the same settings)", flush=True)
        return files
    print(f"Writing {sum(sizes.values())} generated reviews into {folder}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SOURCE_FILE).unlink(missing_ok=True)  # noted again only once every file is written
    rng = random.Random(seed)
    for split, path in files.as_dict().items():
        labels = ["positive", "negative"] * (sizes[split] // 2)
        rng.shuffle(labels)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([INPUT_FIELD, TARGET_FIELD])
            for label in labels:
                writer.writerow([_review(rng, label == "positive"), label])
    (folder / SOURCE_FILE).write_text(origin + "\n")
    return imdb_files(data_dir)
