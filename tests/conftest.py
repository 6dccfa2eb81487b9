"""Shared fixtures: tiny models built from config by tests/assets.py (no real weights), real data paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from assets import build_tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# per-machine measurements (the precision choice) go to a fresh folder, not the user's ~/.cache
os.environ.setdefault("DOMAINFIT_CACHE_DIR", tempfile.mkdtemp(prefix="domainfit-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("DOMAINFIT_DATA", REPO.parent / "shared" / "datasets"))
PHRASEBANK_SPLIT = DATASETS / "financial_phrasebank" / "split_seed42"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), num_labels=3)


@pytest.fixture(scope="session")
def phrasebank_split() -> Path:
    if not (PHRASEBANK_SPLIT / "train.csv").is_file():
        pytest.skip(f"shared datasets not found at {DATASETS} (set DOMAINFIT_DATA)")
    return PHRASEBANK_SPLIT
