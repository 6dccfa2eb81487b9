"""Language-model losses and the warm-up of a new MLM head: one copy for ``domainfit pretrain`` and the joint
objective.

:func:`masked_lm_loss` runs an MLM head on the masked positions only, :func:`lm_loss` is the loss of a whole
masked- or causal-LM model (``training/pretrain.py``), and :func:`warm_up_head` trains a freshly initialised
head alone before the encoder moves (``train.head_warmup_steps`` in pretraining, ``joint.head_warmup_steps``
in the joint objective of ``objectives/joint_mlm.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from domainfit.data.masking import IGNORE_INDEX


def masked_lm_loss(
    head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean", upcast: bool = False
) -> torch.Tensor:
    """Cross-entropy of ``head`` at the masked positions (``labels != -100``) only.

    The vocabulary projection is the costliest layer of a small encoder; running it on the ~15% of positions
    that are predicted, not on every position (as ``model(**batch).loss`` does), nearly halves the step time.

    Args:
        head: the MLM head (transform and vocabulary projection).
        hidden: the encoder's last hidden states, (batch, seq, hidden).
        labels: (batch, seq) token ids to predict, -100 where nothing is predicted.
        reduction: ``mean`` over the predicted tokens, or ``sum``.
        upcast: give the head fp32 inputs (a head that runs outside autocast, as the joint objective's does).
    """
    picked = labels != IGNORE_INDEX  # (batch, seq)
    inputs = hidden[picked]  # (n_picked, hidden)
    logits = head(inputs.float() if upcast else inputs)  # (n_picked, vocab)
    return F.cross_entropy(logits.float(), labels[picked], reduction=reduction)


def lm_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], *, causal: bool = False, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of a masked- or causal-LM model on ``batch["labels"]`` (-100 ignored).

    Masked LMs whose head is one module beside the encoder (BERT ``cls``, RoBERTa/XLM-R ``lm_head``) go
    through :func:`masked_lm_loss`; other models go through their own forward.
    """
    model = getattr(model, "module", model)
    labels = batch["labels"]
    heads = [m for m in model.children() if m is not model.base_model]
    if causal or len(heads) != 1:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # logits: (batch, seq, vocab)
        if causal:
            logits, labels = logits[:, :-1], labels[:, 1:]  # position t predicts token t+1
        return F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction
        )
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    # hidden: (batch, seq, hidden)
    return masked_lm_loss(heads[0], hidden, labels, reduction=reduction)


def warm_up_head(
    params: list[nn.Parameter],
    batch_loss: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float,
    desc: str | None = None,
) -> float:
    """Train only ``params`` (a new head) with AdamW for ``steps`` batches; returns the last batch's loss.

    Gradients are taken for ``params`` alone (``torch.autograd.grad``), so the encoder's weights and their
    ``.grad`` are never touched, whatever the caller's optimizer holds.

    Args:
        params: the head's trainable weights.
        batch_loss: the loss of the next unlabelled batch (it draws the batch).
        steps: warm-up batches.
        lr: AdamW's learning rate; a fresh head takes larger steps than the fine-tune.
        desc: label of a progress bar (None: no bar).
    """
    optimizer = torch.optim.AdamW(params, lr=lr)
    loss = torch.zeros(())
    for _ in tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True, disable=desc is None):
        loss = batch_loss()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
