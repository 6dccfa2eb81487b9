"""Generation: fine-tune a causal LM to write responses (answers from clinical notes, teaching content).

    domainfit train src/domainfit/configs/symptom2disease_generation.yaml

Reads instruction/response JSONL, formats prompts with the tokenizer's chat template, trains LoRA adapters
(or the full model) with cross-entropy on the response tokens only, selects the checkpoint with the lowest
validation perplexity, and at the end measures the base model's perplexity and the ROUGE-L of greedy
generations of both models. model/ holds the merged plain Hugging Face model, ``adapter/`` (PEFT) and
``domainfit.json``; ``domainfit predict`` and ``domainfit.load`` generate from it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainfit.config import PeftConfig, RunConfig
from domainfit.data.batching import pad_batch
from domainfit.data.instructions import PromptFormat, deduplicate, encode_pair, read_instructions, split_off
from domainfit.errors import ConfigError
from domainfit.metrics.generation import generation_metrics, perplexity_metrics
from domainfit.models.causal_lm import (
    ADAPTER_DIR,
    apply_lora,
    generate_responses,
    generation_order,
    load_causal_lm,
    trainable_parameters,
)
from domainfit.models.folder import write_folder_settings
from domainfit.models.loading import freeze_word_embeddings
from domainfit.objectives import create_objective
from domainfit.objectives.causal_lm import IGNORE_INDEX
from domainfit.tasks.base import TASKS, Features, Task, TaskData
from domainfit.version import __version__

log = logging.getLogger(__name__)

SELECTION_METRICS = ("perplexity", "nll_per_token", "loss")


def method_name(cfg: RunConfig) -> str:
    """'lora' or 'full': the fine-tuning method as run.json and domainfit.json name it."""
    return "lora" if cfg.peft.method == "lora" else "full"


def prompt_format(cfg: RunConfig) -> PromptFormat:
    g = cfg.generation
    return PromptFormat(
        use_chat_template=g.use_chat_template, system_prompt=g.system_prompt, prompt_template=g.prompt_template
    )


@TASKS.register("generation")
class GenerationTask(Task):
    """Instruction -> response fine-tuning of a causal LM, with the loss masked to the response."""

    name = "generation"
    sections = frozenset({"generation", "peft"})
    # task-owned report, model card and terminal table (the loop falls back to classification's otherwise)

    def check_own_config(self, cfg: RunConfig, source: Path | None = None) -> None:
        """``peft``: LoRA (the default here) or none (every weight); the adapter goes to model/adapter/."""
        if cfg.peft.method not in ("lora", "none"):
            raise ConfigError(
                f"the generation task trains LoRA adapters or every weight, not {cfg.peft.method!r}",
                path=source,
                key="peft.method",
                fix="set peft.method: lora, or peft.method: none to train every weight.",
            )
        if cfg.peft.save != PeftConfig().save:
            raise ConfigError(
                "the generation task always writes its LoRA adapter to model/adapter/, so this "
                "setting would be ignored",
                path=source,
                key="peft.save",
                fix="remove peft.save; generation.save_merged: false writes the adapter alone.",
            )
        if cfg.peft.adapter_size != PeftConfig().adapter_size:
            raise ConfigError(
                "adapter_size is for Houlsby adapters, which the generation task does not train",
                path=source,
                key="peft.adapter_size",
                fix="remove peft.adapter_size.",
            )

    def load_data(self, cfg: RunConfig) -> TaskData:
        if cfg.train.best_metric not in SELECTION_METRICS:
            raise ConfigError(
                f"the generation task selects checkpoints by {', '.join(SELECTION_METRICS)}, "
                f"not {cfg.train.best_metric!r}",
                key="train.best_metric",
                fix="set train.best_metric: perplexity",
            )
        if cfg.data.format not in ("auto", "jsonl"):
            raise ConfigError(
                f"the generation task reads JSONL, not {cfg.data.format!r}",
                key="data.format",
                fix="set data.format: jsonl (or auto).",
            )
        g, d = cfg.generation, cfg.data

        def read(path: str) -> list:
            return read_instructions(
                path,
                instruction_key=g.instruction_key,
                input_key=g.input_key,
                response_key=g.response_key,
                encoding=d.encoding,
            )

        info: dict[str, Any] = {"files": {"train": d.train}}
        train, removed = deduplicate(read(d.train))
        info["dedup"] = {"rows_read": len(train) + removed, "unique": len(train), "duplicates_removed": removed}
        splits = {"train": train}
        for name in ("validation", "test"):
            if getattr(d, name):
                splits[name] = read(getattr(d, name))
                info["files"][name] = getattr(d, name)
        missing = {name: getattr(d, f"{name}_fraction") for name in ("validation", "test") if name not in splits}
        if "validation" not in splits:
            if "test" in splits:
                missing.pop("test", None)
            splits.update(split_off(splits.pop("train"), missing, seed=d.split_seed))
            info["split"] = {"from": d.train, **{f"{k}_fraction": v for k, v in missing.items()}, "seed": d.split_seed}
        splits = {name: examples for name, examples in splits.items() if examples}  # a 0 fraction gives none
        if "train" not in splits or "validation" not in splits:
            raise ConfigError(
                "after splitting, no training or no validation examples are left",
                key="data.validation_fraction",
                fix="give data.validation, or more data, or a data.validation_fraction > 0.",
            )
        if d.max_train_samples is not None:
            splits["train"] = splits["train"][: d.max_train_samples]
        info["counts"] = {name: len(examples) for name, examples in splits.items()}
        return TaskData(splits=splits, labels=[], info=info)

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        model, tokenizer = load_causal_lm(cfg.model.name, attn_implementation=cfg.model.attn_implementation)
        if cfg.model.freeze_embeddings:  # a tied output projection (most small decoders) stays fixed with it
            freeze_word_embeddings(model)
        if cfg.peft.method == "lora":
            model = apply_lora(model, cfg.peft)
        trainable, total = trainable_parameters(model)
        data.info["parameters"] = {"trainable": trainable, "total": total, "method": method_name(cfg)}
        return model, tokenizer

    def encode(self, examples: list[Any], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        fmt = prompt_format(cfg)
        items = []
        for e in examples:
            ids, prompt_len = encode_pair(
                tokenizer, fmt.render(tokenizer, e.instruction, e.input), e.response, cfg.model.max_length
            )
            items.append({"input_ids": ids, "prompt_len": prompt_len})
        return Features(items=items, lengths=[len(it["input_ids"]) for it in items])

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        input_ids = pad_batch([it["input_ids"] for it in items], tokenizer.pad_token_id)  # (batch, seq)
        positions = torch.arange(input_ids.shape[1])[None, :]  # (1, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])[:, None]  # (batch, 1)
        prompt_lens = torch.tensor([it["prompt_len"] for it in items])[:, None]
        attention_mask = (positions < lengths).long()
        # pad may equal EOS (SmolLM2), so padding is told apart by position, never by token id
        labels = input_ids.masked_fill((positions < prompt_lens) | (positions >= lengths), IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        return create_objective("causal-lm")

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        return perplexity_metrics(logits)  # logits: (n, 2) summed NLL and token count per example

    # -- after training: base model, generations ----------------------------------------------------
    def final_metrics(
        self,
        model: nn.Module,
        tokenizer: Any,
        data: TaskData,
        features: dict[str, Features],
        cfg: RunConfig,
        *,
        objective: nn.Module,
        device: torch.device,
        evaluate: Any,
        map_over_processes: Any,
    ) -> dict[str, dict[str, Any]]:
        """Base-model perplexity on validation/test, and ROUGE-L of greedy generations (fine-tuned and base);
        with several training processes each generates its share of the prompts, batched as one process would."""
        g = cfg.generation
        split = "test" if "test" in features else "validation"
        examples = data.splits[split][: g.rouge_max_examples]
        prompts = [prompt_format(cfg).render(tokenizer, e.instruction, e.input) for e in examples]
        references = [e.response for e in examples]

        order = generation_order(tokenizer, prompts, cfg.model.max_length)  # how generate_responses batches

        def generate(m: Any) -> list[str]:
            def some(share: list[str]) -> list[str]:
                return generate_responses(
                    m,
                    tokenizer,
                    share,
                    max_new_tokens=g.max_new_tokens,
                    batch_size=cfg.train.eval_batch_size,
                    max_prompt_tokens=cfg.model.max_length,
                )

            ordered = map_over_processes(some, [prompts[i] for i in order], block=cfg.train.eval_batch_size)
            texts = [""] * len(prompts)
            for position, i in enumerate(order):
                texts[i] = ordered[position]
            return texts

        results: dict[str, dict[str, Any]] = {"base": {}}
        tuned = generate(model) if examples else []
        with self._base_model(model, cfg, device) as base:
            for name in ("validation", "test"):
                if name in features:
                    results["base"][name] = evaluate(base, objective, features[name])
            base_texts = generate(base) if examples else []
        final = {"base_perplexity": results["base"][split]["perplexity"]}
        if examples:
            final.update(generation_metrics(tuned, references))
            base_scores = generation_metrics(base_texts, references)
            final.update({"base_rougeL": base_scores["rougeL"], "base_exact_match": base_scores["exact_match"]})
            final["examples"] = [
                {"instruction": e.instruction, "input": e.input, "reference": e.response, "generated": t, "base": b}
                for e, t, b in list(zip(examples, tuned, base_texts))[: g.report_examples]
            ]
        return {"base": results["base"], split: final}

    @contextlib.contextmanager
    def _base_model(self, model: nn.Module, cfg: RunConfig, device: torch.device) -> Iterator[nn.Module]:
        """The model before fine-tuning: LoRA switched off, or (full fine-tuning) the base reloaded."""
        if cfg.peft.method == "lora":
            with model.disable_adapter():
                yield model
        else:
            base, _ = load_causal_lm(cfg.model.name, attn_implementation=cfg.model.attn_implementation)
            yield base.to(device)

    # -- the shipped folder ---------------------------------------------------------------------------
    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        g, lora = cfg.generation, cfg.peft.method == "lora"
        merged = not lora or g.save_merged
        if lora:
            model.save_pretrained(out_dir / ADAPTER_DIR)  # adapter_model.safetensors + adapter_config.json
            if merged:
                copy.deepcopy(model).merge_and_unload().save_pretrained(out_dir, safe_serialization=True)
        else:
            model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        meta = {
            "task": self.name,
            "base_model": cfg.model.name,
            "method": method_name(cfg),
            "merged": merged,
            "adapter": ADAPTER_DIR if lora else None,
            "lora": {
                "r": cfg.peft.r,
                "alpha": cfg.peft.alpha,
                "dropout": cfg.peft.dropout,
                "target_modules": cfg.peft.target_modules,
            }
            if lora
            else None,
            "max_length": cfg.model.max_length,
            "max_new_tokens": g.max_new_tokens,
            "decoding": "greedy",
            "prompt": prompt_format(cfg).to_dict(),
            "keys": {"instruction": g.instruction_key, "input": g.input_key, "response": g.response_key},
            "domainfit_version": __version__,
        }
        write_folder_settings(out_dir, meta)
