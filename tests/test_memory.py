"""Micro-batches give the whole batch's loss and gradient; memory release is safe to call."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from domainfit.training.memory import micro_batches, release_memory, set_mmap_threshold


def _batch(rows: int, width: int, per_token: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(rows * width)
    ids = torch.randint(5, 50, (rows, width), generator=g)
    labels = torch.randint(0, 3, (rows, width) if per_token else (rows,), generator=g)
    if per_token:
        labels[:, width // 2 :] = -100
        labels[0] = -100  # a row with no labelled token
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_small_batches_and_images_are_not_split():
    batch = _batch(4, 8)
    assert micro_batches(batch, None) == [(batch, 1.0)]
    assert micro_batches(batch, 32) == [(batch, 1.0)]
    images = {"pixel_values": torch.zeros(4, 3, 8, 8), "labels": torch.zeros(4, dtype=torch.long)}
    assert micro_batches(images, 16) == [(images, 1.0)]


def test_pieces_cover_every_row_once_within_the_budget():
    batch = _batch(10, 12)
    pieces = micro_batches(batch, 40)  # 3 rows of 12 per piece
    assert [len(p["input_ids"]) for p, _ in pieces] == [3, 3, 3, 1]
    assert all(p["input_ids"].numel() <= 40 for p, _ in pieces)
    assert torch.equal(torch.cat([p["labels"] for p, _ in pieces]), batch["labels"])
    assert sum(w for _, w in pieces) == pytest.approx(1.0)
    assert micro_batches(_batch(2, 100), 16)[0][0]["input_ids"].shape == (1, 100)  # a row is never cut


def _grads(model: torch.nn.Module, batch, budget):
    model.zero_grad()
    total = 0.0
    for piece, weight in micro_batches(batch, budget):
        logits = model(piece["input_ids"])
        labels = piece["labels"]
        if labels.dim() == 1:
            logits = logits.mean(dim=1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
        (loss * weight).backward()
        total += float(loss.detach()) * weight
    return total, [p.grad.clone() for p in model.parameters()]


def test_weighted_pieces_give_the_whole_batch_loss_and_gradient():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 3))
    for per_token in (False, True):
        batch = _batch(7, 6, per_token=per_token)
        whole_loss, whole = _grads(model, batch, None)
        split_loss, split = _grads(model, batch, 12)  # 2 rows per piece, uneven labelled-token counts
        assert len(micro_batches(batch, 12)) == 4
        assert split_loss == pytest.approx(whole_loss, rel=1e-5)
        for a, b in zip(whole, split):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_trims_on_glibc():
    assert release_memory() is True


_MMAP_PROBE = """
import ctypes, sys
from domainfit.training.memory import set_mmap_threshold
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                              "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert set_mmap_threshold(1)
libc.free(libc.malloc(8 << 20))  # glibc's own threshold rises past a freed mapped block
before = libc.mallinfo2().hblkhd
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_mmap_threshold_keeps_megabyte_blocks_out_of_the_heap():
    def mapped_bytes(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
        out = subprocess.run([sys.executable, "-c", _MMAP_PROBE, mode], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    assert mapped_bytes("glibc") == 0  # a 2 MB block after an 8 MB one was freed: from the heap
    assert mapped_bytes("fixed") >= 2 << 20  # with the threshold at 1 MB: mapped, so handed back when freed
    assert set_mmap_threshold(None) is False


def test_auto_attention_kernel_is_eager_only_where_sdpa_has_no_fused_kernel(monkeypatch):
    from domainfit.models.loading import attention_kernel

    assert attention_kernel("sdpa", 0.1) == "sdpa" and attention_kernel("eager", 0.0) == "eager"  # user's choice
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert attention_kernel("auto", 0.1) == "eager"  # CPU + attention dropout: SDPA's math path, measured slower
    assert attention_kernel("auto", 0.0) == "sdpa"  # CPU flash kernel
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert attention_kernel("auto", 0.1) == "sdpa"


def test_training_with_micro_batches_runs_end_to_end(tmp_path, tiny_bert, phrasebank_split):
    from test_training import write_config

    from domainfit.tasks import load_run_config as load_config
    from domainfit.training import train

    out = tmp_path / "out"
    cfg = load_config(
        write_config(
            tmp_path, tiny_bert, phrasebank_split, out, epochs=1, micro_batch_tokens=64, release_memory_every=2
        )
    )
    results = train(cfg)
    assert results["train"]["samples_seen"] == 160 and results["test"]["n"] == 484
    assert all(h["train_loss"] is None or h["train_loss"] > 0 for h in results["history"])


def test_recomputing_long_batches_trains_the_same_model(tmp_path, tiny_bert, phrasebank_split):
    """Activation checkpointing of the long batches replays dropout's random state: the same weights (fp32)."""
    from safetensors.torch import load_file
    from test_training import write_config

    from domainfit.tasks import load_run_config as load_config
    from domainfit.training import train

    weights, recomputed = [], []
    for min_length in (None, 24):
        out = tmp_path / f"out{min_length}"
        cfg = load_config(
            write_config(
                tmp_path, tiny_bert, phrasebank_split, out, epochs=1, precision="fp32", recompute_min_length=min_length
            )
        )
        recomputed.append(train(cfg)["train"]["recomputed_batches"])
        weights.append(load_file(str(out / "model" / "model.safetensors")))
    assert recomputed[0] == 0 and 0 < recomputed[1] < 10  # 10 batches, some padded to 24+ tokens, not all
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], msg=name)
