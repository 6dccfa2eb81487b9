"""Joint objective: the task loss plus a masked-LM loss on unlabelled domain text, ``L_task + lambda * L_mlm``.

    joint: {enabled: true, corpus: domain_texts.txt, use_task_texts: true, mlm_weight: 0.1, schedule: constant}

Domain adaptation need not stop before fine-tuning: keeping the MLM objective on while the task is learned
(an auxiliary loss, as in Chronopoulou et al. 2019 and the multi-task view of Gururangan et al. 2020) keeps the
encoder fitted to the domain's language and regularises small labelled sets. :class:`JointMLMObjective` wraps
any task objective. It owns an MLM head (the pretrained one when the checkpoint has it, e.g. a folder written by
``domainfit pretrain``; its decoder is tied to the shared encoder's word embeddings) and its own stream of
unlabelled text (a corpus and/or the task's training texts), masked by ``data/masking.py``. In training mode it
returns ``loss`` (the weighted sum), ``task_loss``, ``mlm_loss`` and ``mlm_weight``, which the loop logs; in
evaluation mode it returns the task objective's output only. The stream position and the step count are
buffers, so they travel in the loop's checkpoints and ``--resume`` continues the stream exactly.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from domainfit.config import JointConfig, RunConfig
from domainfit.data.corpus import CorpusStream, StreamPosition, list_text_files
from domainfit.data.lexicon import Lexicon
from domainfit.data.masking import MaskingCollator
from domainfit.errors import ModelError
from domainfit.models.loading import load_pretrained, load_tokenizer
from domainfit.objectives.base import OBJECTIVES
from domainfit.objectives.masked_lm import masked_lm_loss, warm_up_head

log = logging.getLogger(__name__)


class TiedDecoder(nn.Module):
    """The MLM output layer with its weight borrowed from the encoder's word embeddings at each call.

    Holding the embedding as a parameter here would put it into the optimizer twice (once via the model,
    once via the objective); so only the output bias is a parameter, and the weight is handed over per call.
    """

    def __init__(self, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.bias = bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.__dict__["embedding_weight"]  # set by JointMLMObjective.forward; not a registered parameter
        return nn.functional.linear(hidden, weight, self.bias)  # (..., vocab)


def mlm_weight_at(joint: JointConfig, progress: float) -> float:
    """lambda at ``progress`` (0 at the first training batch, 1 at the last) under the configured schedule."""
    if joint.schedule == "linear-decay":
        return joint.mlm_weight * max(0.0, 1.0 - progress)
    if joint.schedule == "warmup" and joint.warmup_fraction > 0:
        return joint.mlm_weight * min(1.0, progress / joint.warmup_fraction)
    return joint.mlm_weight


@OBJECTIVES.register("joint-mlm")
class JointMLMObjective(nn.Module):
    """``task_objective`` plus ``lambda * MLM loss`` on a separate unlabelled stream.

    Args:
        task_objective: the task's own objective (any module returning ``{"loss", "logits", ...}``).
        model_name: the model being fine-tuned (its MLM head is loaded from here when present).
        joint: the ``joint`` config section.
        max_length, text_prefix: tokenisation, as for the task.
        task_texts: the task's training texts (used when ``joint.use_task_texts``).
        total_batches: training batches of the whole run (the schedule's time axis).
        batch_size: unlabelled texts per MLM batch.
        seed: seed of the stream's shuffling.
    """

    def __init__(
        self,
        task_objective: nn.Module,
        *,
        model_name: str,
        joint: JointConfig,
        max_length: int,
        text_prefix: str = "",
        task_texts: list[str] | None = None,
        total_batches: int = 1,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForMaskedLM

        self.task_objective = task_objective
        self.joint, self.total_batches, self.batch_size = joint, max(total_batches, 1), batch_size
        files = list_text_files(joint.corpus, fmt=joint.corpus_format, key="joint.corpus") if joint.corpus else []
        lexicon = (
            Lexicon.from_file(joint.masking.lexicon, key="joint.masking.lexicon")
            if joint.masking.strategy == "knowledge"
            else None
        )
        tokenizer = load_tokenizer(model_name)
        self.collator = MaskingCollator(
            tokenizer, joint.masking, max_length=max_length, text_prefix=text_prefix, lexicon=lexicon
        )
        lm, info = load_pretrained(AutoModelForMaskedLM.from_pretrained, model_name, output_loading_info=True)
        heads = [(name, module) for name, module in lm.named_children() if module is not lm.base_model]
        if len(heads) != 1:
            raise ModelError(
                f"cannot take the MLM head out of {type(lm).__name__} (parts: {', '.join(n for n, _ in heads)})",
                key="joint.enabled",
                fix="use a BERT/RoBERTa/XLM-R-like encoder for the joint objective.",
            )
        self.head = heads[0][1]
        self._tie_decoder(lm.get_output_embeddings())
        missing = [k for k in info["missing_keys"] if k.startswith(heads[0][0])]
        self.head_is_new = bool(missing)
        log.info(
            "joint MLM head: %s",
            "new (not in the checkpoint; decoder tied to the word embeddings)"
            if missing
            else "loaded from the checkpoint",
        )
        del lm
        self.stream = CorpusStream(
            files,
            fmt=joint.corpus_format,
            column=joint.corpus_column,
            seed=seed,
            texts=task_texts if joint.use_task_texts else None,
        )
        self._texts = None
        # checkpointed with the objective: where the stream is, and how many training batches have run
        self.register_buffer("stream_position", torch.zeros(5, dtype=torch.long))
        self.register_buffer("batches_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("head_warmed", torch.zeros((), dtype=torch.bool))

    def _tie_decoder(self, decoder: nn.Linear) -> None:
        for parent in self.head.modules():
            for name, child in parent.named_children():
                if child is decoder:
                    setattr(parent, name, TiedDecoder(decoder.bias))
                    return
        raise ModelError("the MLM head's output layer was not found inside the head", key="joint.enabled")

    def _next_mlm_batch(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._texts is None:  # created lazily, after a resume has loaded the position buffer
            self.stream.position = StreamPosition(*self.stream_position.tolist())
            self._texts = iter(self.stream)
        batch = self.collator.collate(self.collator.encode([next(self._texts) for _ in range(self.batch_size)]))
        position = self.stream.position
        self.stream_position.copy_(
            torch.tensor([position.epoch, position.file, position.byte, position.line, position.skip])
        )
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.task_objective(model, batch)
        if not model.training:
            return out  # evaluation scores the task only
        if self.joint.head_warmup_steps and not bool(self.head_warmed):
            self.warm_up_head(model, batch["input_ids"].device)
        lam = mlm_weight_at(self.joint, float(self.batches_done) / self.total_batches)
        self.batches_done += 1
        mlm_loss = self._mlm_loss(model, self._next_mlm_batch(batch["input_ids"].device))
        task_loss = out.get("task_loss", out["loss"].detach())
        return {
            **out,
            "loss": out["loss"] + lam * mlm_loss,
            "task_loss": task_loss,
            "mlm_loss": mlm_loss.detach(),
            "mlm_weight": torch.tensor(lam),
        }

    def _mlm_loss(self, model: nn.Module, mlm: dict[str, torch.Tensor], *, encoder_grad: bool = True) -> torch.Tensor:
        """The head's MLM loss on the encoder's hidden states (the head runs at the masked positions only)."""
        unwrapped = getattr(model, "module", model)
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            # the shared encoder runs through the task model's forward, so Accelerate's autocast applies to it too
            hidden = model(
                input_ids=mlm["input_ids"], attention_mask=mlm["attention_mask"], output_hidden_states=True
            ).hidden_states[-1]  # (batch, seq, hidden)
        self.head_decoder().__dict__["embedding_weight"] = unwrapped.get_input_embeddings().weight
        return masked_lm_loss(self.head, hidden, mlm["labels"], upcast=True)

    def warm_up_head(self, model: nn.Module, device: torch.device) -> None:
        """Train the head alone (transform and bias; the encoder and the tied decoder weight stay as they are)
        for ``joint.head_warmup_steps`` batches, once per run (the flag is checkpointed)."""
        params = [p for p in self.head.parameters() if p.requires_grad]

        def batch_loss() -> torch.Tensor:
            return self._mlm_loss(model, self._next_mlm_batch(device), encoder_grad=False)

        # this head's own rate, kept as it was (pretraining's warm-up uses max(10 * lr, 1e-3))
        last = warm_up_head(params, batch_loss, steps=self.joint.head_warmup_steps, lr=1e-3)
        self.head_warmed.fill_(True)
        log.info("joint MLM head warm-up: %d batches, last MLM loss %.3f", self.joint.head_warmup_steps, last)

    def head_decoder(self) -> TiedDecoder:
        return next(m for m in self.head.modules() if isinstance(m, TiedDecoder))


def task_texts(examples: list[Any]) -> list[str]:
    """Texts of a task's examples: ``.text``, or ``.tokens`` joined by spaces (token-level tasks)."""
    texts = []
    for e in examples:
        text = getattr(e, "text", None)
        if text is None and getattr(e, "tokens", None) is not None:
            text = " ".join(e.tokens)
        if isinstance(text, str) and text.strip():
            texts.append(text)
    return texts


def wrap_with_joint_mlm(task_objective: nn.Module, cfg: RunConfig, train_examples: list[Any]) -> nn.Module:
    """``task_objective`` wrapped in :class:`JointMLMObjective` when ``joint.enabled``, else unchanged.

    Any task can call this from its ``create_objective``.
    """
    if not cfg.joint.enabled:
        return task_objective
    batch_size = cfg.joint.batch_size or cfg.train.batch_size
    total_batches = cfg.train.epochs * math.ceil(len(train_examples) / cfg.train.batch_size)
    return JointMLMObjective(
        task_objective,
        model_name=cfg.model.name,
        joint=cfg.joint,
        max_length=cfg.model.max_length,
        text_prefix=cfg.model.text_prefix,
        task_texts=task_texts(train_examples),
        total_batches=total_batches,
        batch_size=batch_size,
        seed=cfg.train.seed,
    )
