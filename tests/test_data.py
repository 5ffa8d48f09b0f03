"""The IMDB download path (against a local HTTP server) and the offline sample."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import threading
import zipfile
from collections import Counter

import pytest

from dl_model_tracking.data import ensure_imdb, imdb_files, load_imdb, read_split, write_sample_dataset
from dl_model_tracking.local_stack import free_port


@pytest.fixture
def imdb_server(tmp_path):
    """Serves imdb.zip laid out like the chapter's archive: imdb/{train,valid,test}.csv."""
    sample = write_sample_dataset(tmp_path / "source", sizes={"train": 40, "val": 10, "test": 10})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sample.as_dict().values():
            archive.write(path, f"imdb/{path.name}")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "imdb.zip").write_bytes(buffer.getvalue())
    requests_seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests_seen.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/imdb.zip", requests_seen, sample
    server.shutdown()


def test_download_fetches_and_unzips_once(imdb_server, tmp_path):
    url, requests_seen, sample = imdb_server
    files = ensure_imdb(tmp_path / "data", url=url)
    assert files.train == tmp_path / "data" / "imdb" / "train.csv"
    assert files.test.read_text() == sample.test.read_text()
    assert files.source_url == url
    ensure_imdb(tmp_path / "data", url=url)
    assert len([p for p in requests_seen if "imdb.zip" in p]) == 1, "present data must not be fetched again"


def test_unreachable_download_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="Could not download the IMDB data .*write_sample_dataset"):
        ensure_imdb(tmp_path / "data", url=f"http://127.0.0.1:{free_port()}/imdb.zip")


def test_archive_without_the_expected_files_is_reported(tmp_path):
    (tmp_path / "www").mkdir()
    with zipfile.ZipFile(tmp_path / "www" / "imdb.zip", "w") as archive:
        archive.writestr("something/else.csv", "a,b\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RuntimeError, match="did not contain the expected files"):
            ensure_imdb(tmp_path / "data", url=f"http://127.0.0.1:{server.server_port}/imdb.zip")
    finally:
        server.shutdown()


def test_sample_has_the_imdb_layout_and_balanced_labels(tmp_path):
    files = write_sample_dataset(tmp_path, sizes={"train": 100, "val": 20, "test": 20})
    assert files.as_dict() == imdb_files(tmp_path).as_dict()
    with open(files.train, newline="") as handle:
        assert next(csv.reader(handle)) == ["review", "sentiment"]
    reviews, labels = read_split(files.train)
    assert Counter(labels) == {"positive": 50, "negative": 50}
    assert len(set(reviews)) > 90, "reviews should vary"
    again = write_sample_dataset(tmp_path / "again", sizes={"train": 100, "val": 20, "test": 20})
    assert again.train.read_text() == files.train.read_text(), "the same seed gives the same data"


def test_load_imdb_builds_the_chapters_datamodule(tmp_path):
    write_sample_dataset(tmp_path, sizes={"train": 40, "val": 10, "test": 10})
    datamodule = load_imdb(tmp_path, batch_size=8)
    assert datamodule.num_classes == 2
    assert datamodule.labels == ["negative", "positive"]
    assert datamodule.imdb_files.test == tmp_path / "imdb" / "test.csv"
