"""Training only the word-embedding rows the data uses gives dense training's model (training/embedding_rows.py)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_training import write_config

from domainfit.config import AugmentConfig, JointConfig, RunConfig
from domainfit.tasks import load_run_config as load_config
from domainfit.training import train
from domainfit.training.embedding_rows import SeenRows, seen_rows_blocker

WORD = "bert.embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def dense_and_seen(tmp_path_factory, tiny_bert, phrasebank_split):
    runs = {}
    for rows in ("all", "seen"):
        tmp = tmp_path_factory.mktemp(rows)
        # weight decay 0.1 at lr 1e-3: the untrained rows shrink measurably, so the decay they get is checked too
        cfg = load_config(
            write_config(
                tmp, tiny_bert, phrasebank_split, tmp / "out", embedding_rows=rows, weight_decay=0.1, best_metric="loss"
            )
        )
        metrics = train(cfg)
        runs[rows] = (metrics, load_file(str(tmp / "out" / "model" / "model.safetensors")))
    return runs


def test_seen_rows_train_the_same_model_as_dense(dense_and_seen, tiny_bert):
    (dense_metrics, dense), (seen_metrics, seen) = dense_and_seen["all"], dense_and_seen["seen"]
    assert dense_metrics["train"]["embedding_rows_trained"] == "all"
    trained = seen_metrics["train"]["embedding_rows_trained"]
    vocab = dense[WORD].shape[0]
    assert 100 < trained < vocab / 2  # 160 PhraseBank sentences use a few thousand of MiniLM's 30,522 ids
    assert dense.keys() == seen.keys()
    for name in dense:
        torch.testing.assert_close(seen[name], dense[name], msg=name)  # float32 tolerances: rounding only
    assert seen_metrics["test"]["accuracy"] == dense_metrics["test"]["accuracy"]
    # the rows no training text uses changed by weight decay only (one factor for all), and the trained ones moved
    start = load_file(str(tiny_bert / "model.safetensors"))[WORD]
    factor = (seen[WORD] * start).sum(1) / (start * start).sum(1)
    residual = (seen[WORD] - factor[:, None] * start).norm(dim=1) / start.norm(dim=1)
    decayed_only = residual < 1e-5
    assert vocab - trained <= int(decayed_only.sum()) < vocab - trained + trained // 10  # + unused special tokens
    assert float(factor[decayed_only].std()) < 1e-6
    assert 0.99 < float(factor[decayed_only].mean()) < 0.99999


def test_step_is_exact_for_one_batch():
    """One AdamW step with and without the compact rows: the same matrix to float rounding."""
    torch.manual_seed(0)
    vocab, hidden = 50, 8
    ids = torch.tensor([[3, 7, 7, 1], [9, 3, 0, 0]])
    results = []
    for compact in (False, True):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(vocab, hidden)
        head = torch.nn.Linear(hidden, 2)
        seen = SeenRows(emb, ids.flatten().tolist()) if compact else None
        params = [*head.parameters(), *([seen.rows] if seen else [emb.weight])]
        opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.5)
        for _ in range(3):
            loss = head(emb(ids).mean(1)).logsumexp(-1).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if seen:
                seen.after_step(opt)
        results.append(emb.weight.detach().clone())
    torch.testing.assert_close(results[1], results[0])
    torch.manual_seed(0)
    start = torch.nn.Embedding(vocab, hidden).weight.detach()
    assert not torch.allclose(results[1][3], start[3] * results[1][20, 0] / start[20, 0])  # a used row trained
    torch.testing.assert_close(results[1][20] / start[20], torch.full((hidden,), (1 - 0.05) ** 3))  # unused: decay


def test_blockers(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    cfg = RunConfig()
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    assert seen_rows_blocker(model, cfg) is None
    assert "augmentation" in seen_rows_blocker(model, RunConfig(augment=AugmentConfig(ops=["swap"])))
    assert "MLM" in seen_rows_blocker(model, RunConfig(joint=JointConfig(enabled=True)))
    model.get_input_embeddings().weight.requires_grad_(False)
    assert "do not train" in seen_rows_blocker(model, cfg)


def test_augmented_run_trains_all_rows(tmp_path, tiny_bert, phrasebank_split):
    cfg = load_config(
        write_config(tmp_path, tiny_bert, phrasebank_split, tmp_path / "out", epochs=1), ["augment.ops=[swap]"]
    )
    metrics = train(cfg)
    assert metrics["train"]["embedding_rows_trained"] == "all"
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["train"]["embedding_rows_trained"] == "all"
