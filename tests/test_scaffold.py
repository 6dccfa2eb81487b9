"""The run scaffold shared by fine-tuning and pretraining, the one MLM loss and head warm-up, the MemoryPlan."""

from __future__ import annotations

import json

import pytest
import torch

from domainfit.config import TrainConfig
from domainfit.objectives import joint_mlm
from domainfit.objectives.masked_lm import lm_loss, masked_lm_loss, warm_up_head
from domainfit.training import memory
from domainfit.training.memory import MemoryPlan
from domainfit.training.scaffold import Cadence, RunningLoss


def test_running_loss_reads_the_mean_since_the_last_reset():
    running = RunningLoss(torch.device("cpu"))
    assert running.read() is None  # nothing added yet
    for loss in (1.0, 2.0, 3.0):
        running.add(torch.tensor(loss))
    assert running.read(reset=True) == 2.0
    assert running.read() == 2.0 and running.count == 0  # no new batch: the last mean stays
    running.add(torch.tensor(5.0))
    assert running.read() == 5.0  # read without reset (an evaluation): the batch still counts at the next log
    running.add(torch.tensor(7.0))
    assert running.read(reset=True) == 6.0 and float(running.sum) == 0.0


def test_cadence_counts_optimizer_steps():
    cadence = Cadence(log_every=10, eval_every=None, save_every=4)
    assert [s for s in range(1, 25) if cadence.log_due(s)] == [10, 20]
    assert not any(cadence.eval_due(s) for s in range(1, 25))  # None: only where the loop decides
    assert [s for s in range(1, 13) if cadence.save_due(s)] == [4, 8, 12]
    assert [s for s in range(1, 10) if Cadence(1, 3, None).eval_due(s)] == [3, 6, 9]


def test_memory_plan_carries_every_lever_of_the_config(monkeypatch):
    cfg = TrainConfig(
        micro_batch_tokens=64,
        release_memory_every=3,
        mmap_threshold_mb=2,
        recompute_min_length=32,
        embedding_rows="all",
    )
    plan = MemoryPlan.from_config(cfg)
    assert (
        plan.micro_batch_tokens,
        plan.release_memory_every,
        plan.mmap_threshold_mb,
        plan.recompute_min_length,
        plan.embedding_rows,
    ) == (64, 3, 2, 32, "all")
    released = []
    monkeypatch.setattr(memory, "release_memory", lambda: released.append(True) or True)
    for step in range(1, 8):
        plan.after_step(step, torch.device("cpu"))
    plan.after_step(9, torch.device("cuda"))  # the glibc/mimalloc trim is a CPU lever only
    assert len(released) == 2  # steps 3 and 6
    batch = {"input_ids": torch.ones(8, 16, dtype=torch.long), "labels": torch.zeros(8, dtype=torch.long)}
    pieces = plan.before_batch(batch)  # 128 tokens over a budget of 64: two pieces of 4 rows, half the loss each
    assert [(len(p["input_ids"]), w) for p, w in pieces] == [(4, 0.5), (4, 0.5)]
    assert plan.summary() == {"embedding_rows_trained": "all", "recomputed_batches": 0}
    assert plan.after_update() is None and plan.extra_parameters() == []
    assert MemoryPlan().before_batch(batch) == [(batch, 1.0)]  # pretraining's plan: no micro-batches


def _tiny_masked_lm():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    model = BertForMaskedLM(config)
    ids = torch.randint(5, 99, (3, 12), generator=torch.Generator().manual_seed(1))
    labels = torch.full_like(ids, -100)
    labels[:, ::4] = ids[:, ::4]  # a quarter of the positions are predicted
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_one_mlm_loss_matches_the_models_own_and_serves_both_callers():
    from domainfit.training import pretrain

    model, batch = _tiny_masked_lm()
    model.eval()
    expected = model(**batch).loss  # the head over every position, then the masked ones picked
    torch.testing.assert_close(lm_loss(model, batch), expected)
    hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    torch.testing.assert_close(masked_lm_loss(model.cls, hidden, batch["labels"], upcast=True), expected)
    n_predicted = int((batch["labels"] != -100).sum())
    torch.testing.assert_close(lm_loss(model, batch, reduction="sum"), expected * n_predicted)
    # pretraining and the joint objective call these functions, not copies of their own
    assert pretrain.lm_loss is lm_loss and pretrain.warm_up_head is warm_up_head
    assert joint_mlm.masked_lm_loss is masked_lm_loss and joint_mlm.warm_up_head is warm_up_head


def test_head_warm_up_moves_the_head_alone_and_leaves_the_encoders_grads_alone():
    model, batch = _tiny_masked_lm()
    model.train()
    head = [model.cls.predictions.transform.dense.weight, model.cls.predictions.bias]
    encoder = {k: v.clone() for k, v in model.bert.state_dict().items()}
    before = [p.detach().clone() for p in head]
    last = warm_up_head(head, lambda: lm_loss(model, batch), steps=3, lr=1e-2)
    assert isinstance(last, float) and last > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, head))
    assert all(torch.equal(v, model.bert.state_dict()[k]) for k, v in encoder.items())
    assert all(p.grad is None for p in model.parameters())


def test_pretraining_accumulates_like_fine_tuning_and_logs_the_same_learning_rates(tmp_path, phrasebank_split):
    """grad_accum_steps counts batches per optimizer step as in fine-tuning, and the shared logging writes the
    lowest layer-wise learning rate, which pretraining's own copy of the logging did not."""
    from assets import build_tiny_bert
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_pretraining import _pretrain_config

    from domainfit.config import load_pretrain_config
    from domainfit.training.pretrain import pretrain

    model = build_tiny_bert(tmp_path / "tiny-mlm", head="mlm", max_position_embeddings=128)
    out = tmp_path / "accum"
    config = _pretrain_config(
        tmp_path,
        model,
        phrasebank_split / "train.csv",
        out,
        max_steps=3,
        eval_every=None,
        save_every=None,
        log_every=1,
        batch_size=4,
        grad_accum_steps=2,
        layer_decay=0.5,
    )
    results = pretrain(load_pretrain_config(config))
    assert results["train"]["steps"] == 3 and results["train"]["texts_seen"] == 3 * 2 * 4
    state = json.loads((out / "checkpoints/step-0000003/state.json").read_text())
    assert state["samples_seen"] == 24
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    scalars = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert len(scalars["train/loss"]) == 3 and scalars["train/loss"] == scalars["train/mlm_loss"]
    lowest, peak = scalars["train/learning_rate_lowest"], scalars["train/learning_rate"]
    assert lowest  # (not at the last step, where the schedule reaches 0 in every group)
    assert all(low == pytest.approx(top * 0.5**3) for low, top in zip(lowest, peak))  # embeddings: depth 3
