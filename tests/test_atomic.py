"""Tests for domainfit.io.atomic's streaming writer and the writers routed through it (dataset download)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile

import pytest

from domainfit.data import sources
from domainfit.errors import DataError
from domainfit.io.atomic import move_atomic, open_atomic


def test_open_atomic_publishes_the_file_only_when_the_block_ends(tmp_path):
    out = tmp_path / "sub" / "out.csv"
    with open_atomic(out, "w", encoding="utf-8", newline="") as f:
        f.write("text,label\r\n")
        assert not out.exists()  # still the temporary sibling
        f.write("a,b\r\n")
    assert out.read_bytes() == b"text,label\r\na,b\r\n"
    assert [p.name for p in out.parent.iterdir()] == ["out.csv"]


def test_open_atomic_keeps_the_old_file_and_no_temp_on_error(tmp_path):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), open_atomic(out, "wb") as f:
        f.write(b"new, half written")
        raise RuntimeError("killed mid-write")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_open_atomic_writes_through_the_temp_name_it_is_given(tmp_path):
    out, tmp = tmp_path / "p.csv", tmp_path / ".p.csv.123.tmp"
    with open_atomic(out, "w", encoding="utf-8", tmp=tmp) as f:
        f.write("x")
        assert tmp.is_file()
    assert not tmp.exists() and out.read_text(encoding="utf-8") == "x"


def test_move_atomic_replaces_the_target(tmp_path):
    source, target = tmp_path / "work.onnx", tmp_path / "model.onnx"
    source.write_bytes(b"new")
    target.write_bytes(b"old")
    move_atomic(source, target)
    assert target.read_bytes() == b"new" and not source.exists()


@pytest.fixture
def archive_source(tmp_path):
    """A dataset source whose URL is a local zip (file://), so fetch runs offline."""
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "Tiny-v1.0.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Tiny-v1.0/sentences.txt", "Profit rose .@positive\n")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    return sources.DatasetSource(
        name="tiny", file="Tiny-v1.0/sentences.txt", url=archive.as_uri(), sha256=sha, licence="test"
    )


def test_fetch_verifies_and_unpacks(tmp_path, archive_source):
    path = sources.fetch(archive_source, tmp_path / "data")
    assert path.read_text(encoding="utf-8") == "Profit rose .@positive\n"
    assert sorted(p.name for p in (tmp_path / "data" / "tiny").iterdir()) == ["Tiny-v1.0", "Tiny-v1.0.zip"]


def test_fetch_with_a_wrong_checksum_leaves_nothing(tmp_path, archive_source):
    wrong = sources.DatasetSource(**{**archive_source.__dict__, "sha256": "0" * 64})
    with pytest.raises(DataError, match="expected 0000"):
        sources.fetch(wrong, tmp_path / "data")
    assert list((tmp_path / "data" / "tiny").iterdir()) == []


def test_an_interrupted_download_leaves_no_partial_file(tmp_path, archive_source, monkeypatch):
    def interrupted(source, target, *args):
        target.write(source.read(10))
        raise RuntimeError("interrupted")  # not an OSError: before io.atomic this left a .part file behind

    monkeypatch.setattr(shutil, "copyfileobj", interrupted)
    with pytest.raises(RuntimeError):
        sources.fetch(archive_source, tmp_path / "data")
    assert list((tmp_path / "data" / "tiny").iterdir()) == []
