"""The training loop, top to bottom: data -> model -> epochs of steps -> evaluate/select -> test -> ship.

    domainfit train config.yaml [--resume] [dotted.key=value ...]

Task-specific parts (reading data, building the model, the loss, the metrics, the saved folder) come from
the registered :class:`~domainfit.tasks.Task`; this file only orders them. Speed choices, measured in
``benchmarks/``: tokenise once, length-grouped shuffled batches with dynamic padding, fused AdamW over the
word-embedding rows the data uses (``training/embedding_rows.py``), SDPA
attention (eager on CPUs, where measured faster), a capped oneDNN kernel cache, and no host/device
synchronisation inside a step (losses are summed on the device and read only every ``log_every`` steps).
Memory levers (long-batch recompute, on by default on CPUs; opt-in micro-batches, ``malloc_trim``) are in
``training/memory.py``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from domainfit.allocator import active_allocator
from domainfit.config import RunConfig, to_dict
from domainfit.data.batching import EpochBatchSampler
from domainfit.data.lengths import sorted_batches
from domainfit.data.windows import aggregate_by_group, group_labels
from domainfit.evaluation import report_for
from domainfit.evaluation.health import HealthMonitor, run_warnings
from domainfit.io.atomic import atomic_dir, write_text_atomic
from domainfit.metrics.classification import improves_on_best
from domainfit.models.loading import check_max_length
from domainfit.tasks import Features, Task, TaskData, create_task
from domainfit.training.checkpoint import CheckpointManager, TrainState
from domainfit.training.embedding_rows import apply_seen_rows
from domainfit.training.memory import (
    limit_kernel_cache,
    long_batch_recompute,
    micro_batches,
    release_memory,
    set_mmap_threshold,
)
from domainfit.training.optim import create_optimizer, create_scheduler
from domainfit.training.precision import create_accelerator, resolve_precision
from domainfit.training.run_dir import finish_run, open_run_folder, resume_or_restart, start_run
from domainfit.training.threads import warn_if_oversubscribed

log = logging.getLogger(__name__)


def train(cfg: RunConfig, *, resume: bool = False) -> dict[str, Any]:
    """Fine-tune, select the best evaluation, test it, and write the run folder. Returns metrics.json's dict."""
    # 1. Everything the user can get wrong is checked before the output folder is touched.
    limit_kernel_cache()  # before the first oneDNN kernel is built (precision's matmul test, the first step)
    set_mmap_threshold(cfg.train.mmap_threshold_mb)  # before the model and the first batches are allocated
    log.info("memory allocator: %s", active_allocator())
    task = create_task(cfg.task)
    task.check_config(cfg)  # options this task would ignore are refused, naming the key
    with open_run_folder(cfg, resume=resume) as out:  # locked for this run; failed/interrupted recorded
        return _train(cfg, task, out, resume=resume_or_restart(out, resume, cfg))


def _train(cfg: RunConfig, task: Task, out: Path, *, resume: bool) -> dict[str, Any]:
    from accelerate.utils import set_seed
    from torch.utils.tensorboard import SummaryWriter

    data = task.load_data(cfg)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    warn_if_oversubscribed(torch.get_num_threads())
    set_seed(cfg.train.seed)
    model, tokenizer = task.build(cfg, data)
    check_max_length(getattr(model, "config", None), cfg.model.max_length)  # before the run folder is written
    features = {name: task.encode(examples, tokenizer, cfg, data) for name, examples in data.splits.items()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mixed_precision = resolve_precision(cfg.train.precision, device, run_dir=out if resume else None)
    start_run(out, cfg, resume=resume, extra={"task": cfg.task, "data": data.info, "labels": data.labels,
                                              "mixed_precision": mixed_precision})
    task.on_run_start(out, features)  # e.g. augmentation samples into the run folder

    # 2. Optimisation. Accelerate places the model and runs mixed precision; the loop stays plain PyTorch.
    accelerator = create_accelerator(mixed_precision, cfg.train.grad_accum_steps)
    objective = task.create_objective(cfg, data).to(accelerator.device)  # before the optimizer sees its weights
    sampler = EpochBatchSampler(features["train"].lengths, cfg.train.batch_size, seed=cfg.train.seed,
                                group_by_length=cfg.train.group_by_length, balance_labels=features["train"].balance_labels,
                                balance_tokens=cfg.train.balance_batch_tokens, length_multiple=cfg.train.pad_to_multiple_of)
    steps_per_epoch = math.ceil(len(sampler) / cfg.train.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.train.epochs
    recompute = long_batch_recompute(model, cfg.train.recompute_min_length, accelerator.device)  # long batches
    # the word-embedding rows the training data never uses get no gradient: train the others only (same result)
    seen_rows = apply_seen_rows(model, cfg, features["train"].items, tokenizer, accelerator.device)
    optimizer = create_optimizer(model, cfg.train, extra=objective,  # objectives may own weights (an MLM head)
                                 extra_named=seen_rows.named_parameters() if seen_rows else ())
    scheduler = create_scheduler(optimizer, cfg.train, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    checkpoints = CheckpointManager(out)
    state = checkpoints.load(accelerator.unwrap_model(model), optimizer, scheduler, objective=objective) if resume else TrainState()
    if resume and seen_rows is not None:
        seen_rows.refresh()  # the checkpoint's matrix holds the trained rows
    clipped = [*model.parameters(), *([seen_rows.rows] if seen_rows else [])]
    eval_every = steps_per_epoch if cfg.train.eval_every == "epoch" else cfg.train.eval_every
    tb = SummaryWriter(str(out / "tensorboard"), purge_step=state.step if resume else None)
    device = accelerator.device
    health = HealthMonitor(cfg)  # warns (log, progress bar) when a validation looks collapsed

    def evaluate_and_select() -> bool:
        """Evaluate on validation, log, keep the best weights, checkpoint. Returns True to stop early."""
        if running["count"]:
            running["last"] = round(running["sum"].item() / running["count"], 4)
        metrics = evaluate(model, objective, features["validation"], task, tokenizer, data, cfg.train.eval_batch_size, device,
                           max_tokens=cfg.train.eval_batch_tokens)
        for name, value in _scalars(metrics).items():
            tb.add_scalar(f"validation/{name}", value, state.step)
        value = metrics[cfg.train.best_metric]
        improved = improves_on_best(cfg.train.best_metric, value, metrics.get("loss"), state.best_value, state.best_loss)
        entry = {"epoch": round(state.samples_seen / len(features["train"]), 3), "step": state.step,
                 "train_loss": running["last"], "validation": _scalars(metrics)}
        state.history.append(entry)
        if improved:
            state.best_value, state.best_step, state.evals_without_improvement = value, state.step, 0
            state.best_loss = metrics.get("loss")
            checkpoints.save_best(accelerator.unwrap_model(model), entry)
        else:
            state.evals_without_improvement += 1
        bar.set_postfix({"loss": running["last"], f"val_{cfg.train.best_metric}": round(value, 4),
                         **health.update(metrics, state.step)})
        patience = cfg.train.early_stopping_patience
        return patience is not None and state.evals_without_improvement >= patience

    # 3. The loop.
    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True)
    running = {"sum": torch.zeros((), device=device), "count": 0, "last": None}
    stop = False
    for epoch in range(state.epoch, cfg.train.epochs):
        sampler.set_epoch(epoch, start_batch=state.batch_in_epoch)
        model.train()
        tick = time.perf_counter()
        for indices in sampler:
            batch = task.collate([features["train"].items[i] for i in indices], tokenizer, train=True)
            if "attention_mask" in batch:  # CPU tensor: no device sync
                state.real_tokens += int(batch["attention_mask"].sum())
                state.computed_tokens += batch["attention_mask"].numel()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if recompute is not None and "input_ids" in batch:
                recompute.set_for(batch["input_ids"].shape[-1])
            # token-balanced batches vary in rows: weigh each example 1/batch_size, as in a fixed-size batch
            rows_weight = len(indices) / cfg.train.batch_size if sampler.balance_tokens else 1.0
            with accelerator.accumulate(model):
                pieces = micro_batches(batch, cfg.train.micro_batch_tokens)
                parts = []  # the weighted loss of each piece
                for piece, weight in pieces:  # usually one; several only for batches over micro_batch_tokens
                    outputs = objective(model, piece)
                    part = outputs["loss"] * weight if len(pieces) > 1 else outputs["loss"]
                    accelerator.backward(part * rows_weight if rows_weight != 1.0 else part)
                    parts.append(part.detach())
                if accelerator.sync_gradients and cfg.train.max_grad_norm:
                    accelerator.clip_grad_norm_(clipped, cfg.train.max_grad_norm)
                optimizer.step()
                if seen_rows is not None and accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    seen_rows.after_step(optimizer)  # before scheduler.step: the decay uses this step's lr
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            every = cfg.train.release_memory_every
            if every and device.type == "cpu" and accelerator.sync_gradients and (state.step + 1) % every == 0:
                release_memory()
            running["sum"] += parts[0] if len(parts) == 1 else torch.stack(parts).sum()
            running["count"] += 1
            state.batch_in_epoch += 1
            state.samples_seen += len(indices)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            if state.step % cfg.train.log_every == 0:
                running["last"] = round(running["sum"].item() / running["count"], 4)  # the only sync per N steps
                running["sum"].zero_()
                running["count"] = 0
                tb.add_scalar("train/loss", running["last"], state.step)
                for name, part in outputs.items():
                    if name.endswith(("_loss", "_weight")):  # loss parts, and their weights (joint objectives)
                        tb.add_scalar(f"train/{name}", part.item(), state.step)
                lrs = scheduler.get_last_lr()
                tb.add_scalar("train/learning_rate", lrs[0], state.step)
                if min(lrs) < lrs[0]:  # layer-wise decay: the embeddings' lr too
                    tb.add_scalar("train/learning_rate_lowest", min(lrs), state.step)
                bar.set_postfix(loss=running["last"], **health.postfix)
            end_of_epoch = state.batch_in_epoch == len(sampler) + sampler.start_batch
            if state.step % eval_every == 0 or (end_of_epoch and cfg.train.eval_every == "epoch"):
                state.train_seconds += time.perf_counter() - tick
                stop = evaluate_and_select()
                if end_of_epoch:
                    state.epoch, state.batch_in_epoch = epoch + 1, 0
                checkpoints.save(state, accelerator.unwrap_model(model), optimizer, scheduler, objective=objective)
                tick = time.perf_counter()
                if stop:
                    break
            elif cfg.train.save_every and state.step % cfg.train.save_every == 0:
                checkpoints.save(state, accelerator.unwrap_model(model), optimizer, scheduler, objective=objective)
        state.train_seconds += time.perf_counter() - tick
        if state.epoch == epoch:  # epoch ended between evaluations
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            if cfg.train.save_last:
                checkpoints.save(state, accelerator.unwrap_model(model), optimizer, scheduler, objective=objective)
        if stop:
            log.info("early stopping: no improvement in %d evaluations", cfg.train.early_stopping_patience)
            break
    bar.close()
    if state.best_step is None or state.history[-1]["step"] != state.step:
        evaluate_and_select()  # make sure the final weights were considered

    # 4. Best weights -> test -> shippable folder, metrics.json, report.
    unwrapped = accelerator.unwrap_model(model)
    best = checkpoints.load_best(unwrapped)
    results = _finalize(cfg, task, data, features, unwrapped, objective, tokenizer, state, best, device, out,
                        precision=mixed_precision, embedding_rows=seen_rows.num_rows if seen_rows else "all",
                        recomputed=recompute.batches if recompute else 0)
    tb.close()
    finish_run(out, best_step=state.best_step)
    return results


def evaluate(model, objective, features: Features, task: Task, tokenizer, data: TaskData, batch_size: int,
             device: torch.device, max_tokens: int | None = None) -> dict[str, Any]:
    """Metrics (and mean loss) of ``model`` on one split; batches sorted by length for speed (at most
    ``batch_size`` rows and ``max_tokens`` padded tokens each)."""
    logits, labels, loss = predict_logits(model, objective, features, task, tokenizer, batch_size, device, max_tokens)
    if features.groups is not None:  # windows of long documents: score documents, not windows
        labels = group_labels(labels, features.groups)
        logits = aggregate_by_group(logits, features.groups, features.aggregation)
    metrics = task.compute_feature_metrics(features, logits, labels, data)  # items may be pieces (windows) of examples
    metrics["loss"] = loss
    return metrics


@torch.inference_mode()
def predict_logits(model, objective, features: Features, task: Task, tokenizer, batch_size: int,
                   device: torch.device, max_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Logits and labels for every item (in the split's original order), and the mean task loss.

    Per-token outputs (token classification) come in batches of different lengths; they are padded to the
    longest (logits with 0, labels with -100, the ignore index) before concatenation.
    """
    was_training = model.training
    model.eval()
    order, chunks, label_chunks = [], [], []
    loss_sum = torch.zeros((), device=device)
    for indices in sorted_batches(features.lengths, batch_size, max_tokens):
        batch = task.collate([features.items[i] for i in indices], tokenizer)
        out = objective(model, {k: v.to(device) for k, v in batch.items()})
        loss_sum += out.get("task_loss", out["loss"]).detach().float() * len(indices)
        chunks.append(out["logits"].float().cpu())
        label_chunks.append(batch["labels"])
        order += indices
    model.train(was_training)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return _cat_padded(chunks, 0.0)[inverse], _cat_padded(label_chunks, -100)[inverse], float(loss_sum) / max(len(order), 1)


def _cat_padded(chunks: list[torch.Tensor], value: float) -> torch.Tensor:
    """Concatenate along dim 0, padding dim 1 to the longest chunk when chunks differ there."""
    if chunks and chunks[0].ndim >= 2 and len({c.shape[1] for c in chunks}) > 1:
        width = max(c.shape[1] for c in chunks)
        chunks = [torch.nn.functional.pad(c, (0, 0) * (c.ndim - 2) + (0, width - c.shape[1]), value=value)
                  for c in chunks]
    return torch.cat(chunks)


def _finalize(cfg, task, data, features, model, objective, tokenizer, state, best, device, out: Path, *,
              precision: str, embedding_rows: int | str = "all", recomputed: int = 0) -> dict[str, Any]:
    results: dict[str, Any] = {"best": best, "history": state.history}
    if task.calibrates:  # fit decision settings (multi-label thresholds) on validation
        logits, labels, _ = predict_logits(model, objective, features["validation"], task, tokenizer,
                                           cfg.train.eval_batch_size, device, cfg.train.eval_batch_tokens)
        task.calibrate(logits, labels, data)
    for split in ("validation", "test"):
        if split in features:
            results[split] = evaluate(model, objective, features[split], task, tokenizer, data, cfg.train.eval_batch_size, device,
                                      max_tokens=cfg.train.eval_batch_tokens)
    def score(m, o, split_features):  # lets a task score another model (generation: the base model) as the loop does
        return evaluate(m, o, split_features, task, tokenizer, data, cfg.train.eval_batch_size, device,
                        max_tokens=cfg.train.eval_batch_tokens)

    extra = task.final_metrics(model, tokenizer, data, features, cfg, objective=objective, device=device, evaluate=score)
    for key, values in extra.items():  # scores that need the trained model (generation: base model, ROUGE-L)
        results.setdefault(key, {}).update(values)
    results["warnings"] = run_warnings(results.get("test") or results["validation"], cfg)  # collapse etc.
    results["train"] = {
        "samples_per_second": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
        "train_runtime_s": round(state.train_seconds, 2),
        "samples_seen": state.samples_seen,
        "steps": state.step,
        "real_tokens": state.real_tokens,
        "computed_tokens": state.computed_tokens,
        "precision": {"no": "fp32"}.get(precision, precision),
        "device": str(device),
        "allocator": active_allocator(),
        "embedding_rows_trained": embedding_rows,
        "recomputed_batches": recomputed,
    }
    results["data"] = data.info
    presentation = report_for(task.name)
    with atomic_dir(out / "model") as tmp:
        task.save(model, tokenizer, cfg, data, tmp)
        presentation.write_model_card(tmp, cfg=to_dict(cfg), results=results, labels=data.labels)
    write_text_atomic(out / "metrics.json", json.dumps(results, indent=1, ensure_ascii=False))
    final = results.get("test") or results["validation"]
    presentation.write_report(task, out, final, title=f"domainfit {cfg.task}: {Path(cfg.output.dir).name}",
           split_name="test" if "test" in results else "validation",
           context={"model": cfg.model.name, "train data": cfg.data.train,
                    "best checkpoint": f"step {best['step']} (epoch {best['epoch']})" if best else "final",
                    "selected by": f"validation {cfg.train.best_metric}",
                    "train samples/s": results["train"]["samples_per_second"]},
           history=state.history, best_metric=cfg.train.best_metric, warnings=results["warnings"])
    print(presentation.format_metrics(final))
    return results


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}

