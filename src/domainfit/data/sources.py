"""Known public datasets: find them on disk (offline first), or download and verify them.

The demo looks in ``--data-dir``, then ``$DOMAINFIT_DATA``, then ``../shared/datasets`` and ``./datasets``
relative to the working directory. Only when the dataset is nowhere on disk does it download the archive
from its canonical public source and check its SHA-256 (the value recorded in the dataset's SOURCE.txt)
before unpacking. On an air-gapped machine, copy the folder over and point ``--data-dir`` at it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from domainfit.errors import DataError
from domainfit.io.atomic import open_atomic


@dataclass(frozen=True)
class DatasetSource:
    name: str  # folder name under the data dir
    file: str  # the file the demo reads, relative to the dataset folder
    url: str  # canonical archive
    sha256: str  # of the archive
    licence: str


SOURCES = {
    "financial_phrasebank": DatasetSource(
        name="financial_phrasebank",
        file="FinancialPhraseBank-v1.0/Sentences_50Agree.txt",
        url="https://huggingface.co/datasets/takala/financial_phrasebank/resolve/main/data/"
        "FinancialPhraseBank-v1.0.zip",
        sha256="0e1a06c4900fdae46091d031068601e3773ba067c7cecb5b0da1dcba5ce989a6",
        licence="CC BY-NC-SA 3.0 (Malo et al. 2014): non-commercial use",
    ),
}


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Where datasets are looked for, in order."""
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get("DOMAINFIT_DATA"):
        dirs.append(Path(os.environ["DOMAINFIT_DATA"]))
    cwd = Path.cwd()
    dirs += [cwd / ".." / "shared" / "datasets", cwd / "datasets", Path.home() / ".cache" / "domainfit" / "datasets"]
    return dirs


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def locate(name: str, data_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """Path of the dataset's main file, downloading (and verifying) it only if it is on no search path."""
    source = SOURCES[name]
    for base in candidate_dirs(data_dir):
        path = base / source.name / source.file
        if path.is_file():
            return path.resolve()
    target = Path(data_dir) if data_dir else Path.home() / ".cache" / "domainfit" / "datasets"
    if not download:
        raise DataError(
            f"dataset {name!r} not found in: {', '.join(str(d) for d in candidate_dirs(data_dir))}",
            fix=f"download {source.url} and unpack it into <data dir>/{source.name}/, then pass --data-dir.",
        )
    return fetch(source, target)


def fetch(source: DatasetSource, target: Path) -> Path:
    """Download ``source`` into ``target/<name>/``, verify its SHA-256, unpack it."""
    folder = target / source.name
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / Path(source.url).name
    print(f"downloading {source.url} (licence: {source.licence})")
    # the archive appears only once downloaded whole and verified; any failure removes the partial file
    with open_atomic(archive, "wb") as f:
        try:
            with urllib.request.urlopen(source.url, timeout=60) as r:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise DataError(
                f"could not download {source.url}: {e}",
                fix=f"on a machine with internet, download it, copy it to {folder}/ and unpack it "
                "there; or pass --data-dir pointing at a folder that holds it.",
            ) from e
        f.flush()
        digest = sha256_of(Path(f.name))
        if digest != source.sha256:
            raise DataError(
                f"downloaded file has SHA-256 {digest}, expected {source.sha256}",
                path=archive,
                fix="the source changed or the download was corrupted; fetch it again or get a verified copy.",
            )
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)
    return (folder / source.file).resolve()
