"""The training loop, top to bottom: data -> model -> epochs of steps -> evaluate/select -> test -> ship.

    domainfit train config.yaml [--resume] [dotted.key=value ...]

Task-specific parts (reading data, building the model, the loss, the metrics, the saved folder) come from
the registered :class:`~domainfit.tasks.Task`; this file only orders them. Speed choices, measured in
``benchmarks/``: tokenise once, length-grouped shuffled batches with dynamic padding, fused AdamW over the
word-embedding rows the data uses (``training/embedding_rows.py``), SDPA
attention (eager on CPUs, where measured faster), a capped oneDNN kernel cache, and no host/device
synchronisation inside a step (losses are summed on the device and read only every ``log_every`` steps).
Memory levers (long-batch recompute, on by default on CPUs; opt-in micro-batches, ``malloc_trim``) are one
``MemoryPlan`` in ``training/memory.py``; the setup, optimizer, cadence, logging and checkpoints around the
loop are shared with ``domainfit pretrain`` in ``training/scaffold.py``.

Several processes (``torchrun --nproc_per_node N -m domainfit train ...``, or ``accelerate launch``) share each
batch's rows and the evaluation batches; the main process alone writes the run folder (docs/distributed.md).
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from domainfit.allocator import active_allocator
from domainfit.config import RunConfig, to_dict
from domainfit.data.batching import EpochBatchSampler
from domainfit.data.lengths import sorted_batches
from domainfit.data.windows import aggregate_by_group, group_labels
from domainfit.evaluation import report_for, run_report_arguments
from domainfit.evaluation.health import HealthMonitor, run_warnings
from domainfit.io.atomic import atomic_dir
from domainfit.metrics.classification import improves_on_best
from domainfit.models.loading import check_max_length
from domainfit.tasks import Features, Task, TaskData, create_task
from domainfit.training.distributed import (
    evaluation_model,
    map_over_processes,
    on_main_process,
    refuse_sharded_launch,
)
from domainfit.training.events import announce_evaluation
from domainfit.training.memory import MemoryPlan
from domainfit.training.precision import precision_label
from domainfit.training.run_dir import open_run_folder, resume_or_restart, start_run
from domainfit.training.scaffold import (
    Cadence,
    RunningLoss,
    RunScaffold,
    Stopwatch,
    choose_precision,
    set_up_process,
)

log = logging.getLogger(__name__)


def train(cfg: RunConfig, *, resume: bool = False) -> dict[str, Any]:
    """Fine-tune, select the best evaluation, test it, and write the run folder. Returns metrics.json's dict."""
    # 1. Everything the user can get wrong is checked before the output folder is touched.
    refuse_sharded_launch()  # FSDP / DeepSpeed: the checkpoints need DDP
    memory = MemoryPlan.from_config(cfg.train)
    memory.configure_process()  # before the first oneDNN kernel is built and the model is allocated
    log.info("memory allocator: %s", active_allocator())
    task = create_task(cfg.task)
    task.check_config(cfg)  # options this task would ignore are refused, naming the key
    with open_run_folder(cfg, resume=resume) as out:  # locked for this run; failed/interrupted recorded
        return _train(cfg, task, memory, out, resume=resume_or_restart(out, resume, cfg))


def _train(cfg: RunConfig, task: Task, memory: MemoryPlan, out: Path, *, resume: bool) -> dict[str, Any]:
    data = task.load_data(cfg)
    set_up_process(cfg.train)  # threads, seed: before the new head's weights are drawn
    model, tokenizer = task.build(cfg, data)
    check_max_length(getattr(model, "config", None), cfg.model.max_length)  # before the run folder is written
    features = {name: task.encode(examples, tokenizer, cfg, data) for name, examples in data.splits.items()}
    mixed_precision = choose_precision(cfg.train, out, resume=resume)
    start_run(
        out,
        cfg,
        resume=resume,
        extra={"task": cfg.task, "data": data.info, "labels": data.labels, "mixed_precision": mixed_precision},
    )
    on_main_process(task.on_run_start, out, features)  # e.g. augmentation samples into the run folder

    # 2. Optimisation. Accelerate places the model and runs mixed precision; the loop stays plain PyTorch.
    run = RunScaffold(out, cfg.train, mixed_precision)
    device, accelerator = run.device, run.accelerator
    objective = task.create_objective(cfg, data).to(device)  # before the optimizer sees its weights
    sampler = EpochBatchSampler(
        features["train"].lengths,
        cfg.train.batch_size,
        seed=cfg.train.seed,
        group_by_length=cfg.train.group_by_length,
        balance_labels=features["train"].balance_labels,
        balance_tokens=cfg.train.balance_batch_tokens,
        length_multiple=cfg.train.pad_to_multiple_of,
        num_shards=accelerator.num_processes,
        shard=accelerator.process_index,
    )
    steps_per_epoch = math.ceil(len(sampler) / cfg.train.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.train.epochs
    memory.prepare_model(model, cfg, features["train"].items, tokenizer, device)  # recompute, embedding rows
    model, state = run.prepare(
        model,
        total_steps,
        resume=resume,
        objective=objective,  # may own an MLM head
        extra_named=memory.extra_parameters(),
    )  # the compact embedding rows
    if resume:
        memory.after_resume()
    clipped = memory.clipped(model)
    eval_every = steps_per_epoch if cfg.train.eval_every == "epoch" else cfg.train.eval_every
    cadence = Cadence(cfg.train.log_every, eval_every, cfg.train.save_every)
    health = HealthMonitor(cfg)  # warns (log, progress bar) when a validation looks collapsed
    running = RunningLoss(device)

    def evaluate_and_select() -> bool:
        """Evaluate on validation, log, keep the best weights, checkpoint. Returns True to stop early."""
        running.read()
        metrics = evaluate(
            model,
            objective,
            features["validation"],
            task,
            tokenizer,
            data,
            cfg.train.eval_batch_size,
            device,
            max_tokens=cfg.train.eval_batch_tokens,
            accelerator=accelerator,
        )  # all processes: same metrics
        run.log_validation(state.step, _scalars(metrics))
        value = metrics[cfg.train.best_metric]
        improved = improves_on_best(
            cfg.train.best_metric, value, metrics.get("loss"), state.best_value, state.best_loss
        )
        entry = {
            "epoch": round(state.samples_seen / len(features["train"]), 3),
            "step": state.step,
            "train_loss": running.last,
            "validation": _scalars(metrics),
        }
        state.history.append(entry)
        if improved:
            state.best_value, state.best_step, state.evals_without_improvement = value, state.step, 0
            state.best_loss = metrics.get("loss")
            run.save_best(entry)
        else:
            state.evals_without_improvement += 1
        bar.set_postfix(
            {
                "loss": running.last,
                f"val_{cfg.train.best_metric}": round(value, 4),
                **health.update(metrics, state.step),
            }
        )
        patience = cfg.train.early_stopping_patience
        return patience is not None and state.evals_without_improvement >= patience

    # 3. The loop.
    bar = tqdm(
        total=total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True, disable=not run.is_main
    )
    shard = {"process": accelerator.process_index, "rows": 0, "batches": 0}  # this process's share (metrics.json)
    clock = Stopwatch(state)  # training seconds, paused while evaluating
    stop = False
    for epoch in range(state.epoch, cfg.train.epochs):
        sampler.set_epoch(epoch, start_batch=state.batch_in_epoch)
        model.train()
        clock.start()
        for global_batch in sampler:
            indices, share = sampler.shard_of(global_batch)  # this process's rows (all of them with one process)
            batch = task.collate([features["train"].items[i] for i in indices], tokenizer, train=True)
            if "attention_mask" in batch and share:  # CPU tensor: no device sync
                state.real_tokens += int(batch["attention_mask"].sum())
                state.computed_tokens += batch["attention_mask"].numel()
            shard["rows"] += len(indices) if share else 0
            shard["batches"] += 1 if share else 0
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            # token-balanced batches vary in rows: weigh each example 1/batch_size, as in a fixed-size batch
            rows_weight = share * (len(global_batch) / cfg.train.batch_size if sampler.balance_tokens else 1.0)
            with accelerator.accumulate(model):  # gradient accumulation: steps only at its boundaries
                pieces = memory.before_batch(batch)  # usually one; several over train.micro_batch_tokens
                parts = []  # the weighted loss of each piece
                for i, (piece, weight) in enumerate(pieces):
                    # processes may cut different numbers of pieces: only the last one exchanges gradients
                    with accelerator.no_sync(model) if i < len(pieces) - 1 else nullcontext():
                        outputs = objective(model, piece)
                        part = outputs["loss"] * weight if len(pieces) > 1 else outputs["loss"]
                        accelerator.backward(part * rows_weight if rows_weight != 1.0 else part)
                    parts.append(part.detach())
                run.optimizer_step(clipped, after_update=memory.after_update())
            running.add(parts[0] if len(parts) == 1 else torch.stack(parts).sum())
            state.batch_in_epoch += 1
            state.samples_seen += len(global_batch)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            memory.after_step(state.step, device)
            bar.update(1)
            if cadence.log_due(state.step):
                loss = running.read(reset=True)
                run.log_training(state.step, loss, outputs)  # with the parts of joint objectives
                bar.set_postfix(loss=loss, **health.postfix)
            end_of_epoch = state.batch_in_epoch == len(sampler) + sampler.start_batch
            if cadence.eval_due(state.step) or (end_of_epoch and cfg.train.eval_every == "epoch"):
                clock.stop()
                stop = evaluate_and_select()
                if end_of_epoch:
                    state.epoch, state.batch_in_epoch = epoch + 1, 0
                run.save(state)
                announce_evaluation(state.history, last=stop or state.step >= total_steps)  # e.g. tune's pruning
                clock.start()
                if stop:
                    break
            elif cadence.save_due(state.step):
                run.save(state)
        clock.stop()
        if state.epoch == epoch:  # epoch ended between evaluations
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            if cfg.train.save_last:
                run.save(state)
        if stop:
            log.info("early stopping: no improvement in %d evaluations", cfg.train.early_stopping_patience)
            break
    bar.close()
    if state.best_step is None or state.history[-1]["step"] != state.step:
        evaluate_and_select()  # make sure the final weights were considered
        announce_evaluation(state.history, last=True)

    # 4. Best weights -> test -> shippable folder, metrics.json, report.
    unwrapped = run.unwrapped_model
    best = run.load_best()  # once the main process has written it
    run.sum_tokens(state)
    if accelerator.num_processes > 1:
        log.info(
            "process %d of %d trained on %d rows in %d batches",
            accelerator.process_index,
            accelerator.num_processes,
            shard["rows"],
            shard["batches"],
        )
    processes = accelerator.gather_for_metrics([shard], use_gather_object=True)
    results = _finalize(
        cfg,
        task,
        data,
        features,
        unwrapped,
        objective,
        tokenizer,
        state,
        best,
        run,
        levers={**memory.summary(), "processes": processes},
    )
    run.finish(best_step=state.best_step)
    return results


def evaluate(
    model,
    objective,
    features: Features,
    task: Task,
    tokenizer,
    data: TaskData,
    batch_size: int,
    device: torch.device,
    max_tokens: int | None = None,
    accelerator=None,
) -> dict[str, Any]:
    """Metrics (and mean loss) of ``model`` on one split; batches sorted by length for speed (at most
    ``batch_size`` rows and ``max_tokens`` padded tokens each). With ``accelerator`` and several processes,
    they share the batches and every process gets the metrics of the whole split."""
    logits, labels, loss = predict_logits(
        model, objective, features, task, tokenizer, batch_size, device, max_tokens, accelerator=accelerator
    )
    if features.groups is not None:  # windows of long documents: score documents, not windows
        labels = group_labels(labels, features.groups)
        logits = aggregate_by_group(logits, features.groups, features.aggregation)
    metrics = task.compute_feature_metrics(features, logits, labels, data)  # items may be pieces (windows) of examples
    metrics["loss"] = loss
    return metrics


@torch.inference_mode()
def predict_logits(
    model,
    objective,
    features: Features,
    task: Task,
    tokenizer,
    batch_size: int,
    device: torch.device,
    max_tokens: int | None = None,
    accelerator=None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Logits and labels for every item (in the split's original order), and the mean task loss.

    Per-token outputs (token classification) come in batches of different lengths; they are padded to the
    longest (logits with 0, labels with -100, the ignore index) before concatenation. With ``accelerator`` and
    several processes, process ``r`` predicts batches ``r, r + n, ...`` and all of them are gathered
    (``gather_for_metrics``), so every process returns the whole split and selects the same best checkpoint.
    """
    sharded = accelerator is not None and accelerator.num_processes > 1
    if sharded:
        model = evaluation_model(model, accelerator)  # no DDP collective in a forward: shares may be unequal
    was_training = model.training
    model.eval()
    order, chunks, label_chunks = [], [], []
    loss_sum = torch.zeros((), device=device)
    batches = sorted_batches(features.lengths, batch_size, max_tokens)
    if sharded:
        batches = batches[accelerator.process_index :: accelerator.num_processes]
    for indices in batches:
        batch = task.collate([features.items[i] for i in indices], tokenizer)
        out = objective(model, {k: v.to(device) for k, v in batch.items()})
        loss_sum += out.get("task_loss", out["loss"]).detach().float() * len(indices)
        chunks.append(out["logits"].float().cpu())
        label_chunks.append(batch["labels"])
        order += indices
    model.train(was_training)
    loss_total = float(loss_sum)
    if sharded:  # Python objects, not tensors: processes hold different numbers of batches of different widths
        parts = accelerator.gather_for_metrics([(order, chunks, label_chunks, loss_total)], use_gather_object=True)
        order = [i for part in parts for i in part[0]]
        chunks = [c for part in parts for c in part[1]]
        label_chunks = [c for part in parts for c in part[2]]
        loss_total = sum(part[3] for part in parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return _cat_padded(chunks, 0.0)[inverse], _cat_padded(label_chunks, -100)[inverse], loss_total / max(len(order), 1)


def _cat_padded(chunks: list[torch.Tensor], value: float) -> torch.Tensor:
    """Concatenate along dim 0, padding dim 1 to the longest chunk when chunks differ there."""
    if chunks and chunks[0].ndim >= 2 and len({c.shape[1] for c in chunks}) > 1:
        width = max(c.shape[1] for c in chunks)
        chunks = [
            torch.nn.functional.pad(c, (0, 0) * (c.ndim - 2) + (0, width - c.shape[1]), value=value) for c in chunks
        ]
    return torch.cat(chunks)


def _finalize(
    cfg, task, data, features, model, objective, tokenizer, state, best, run: RunScaffold, *, levers: dict[str, Any]
) -> dict[str, Any]:
    device, out, precision = run.device, run.out, run.mixed_precision
    accelerator = run.accelerator  # every process scores its share of the batches; the main one writes
    results: dict[str, Any] = {"best": best, "history": state.history}
    if task.calibrates:  # fit decision settings (multi-label thresholds) on validation
        logits, labels, _ = predict_logits(
            model,
            objective,
            features["validation"],
            task,
            tokenizer,
            cfg.train.eval_batch_size,
            device,
            cfg.train.eval_batch_tokens,
            accelerator=accelerator,
        )
        task.calibrate(logits, labels, data)
    for split in ("validation", "test"):
        if split in features:
            results[split] = evaluate(
                model,
                objective,
                features[split],
                task,
                tokenizer,
                data,
                cfg.train.eval_batch_size,
                device,
                max_tokens=cfg.train.eval_batch_tokens,
                accelerator=accelerator,
            )

    def score(m, o, split_features):  # lets a task score another model (generation: the base model) as the loop does
        return evaluate(
            m,
            o,
            split_features,
            task,
            tokenizer,
            data,
            cfg.train.eval_batch_size,
            device,
            max_tokens=cfg.train.eval_batch_tokens,
            accelerator=accelerator,
        )

    extra = task.final_metrics(
        model,
        tokenizer,
        data,
        features,
        cfg,
        objective=objective,
        device=device,
        evaluate=score,
        map_over_processes=map_over_processes,  # generation: each process generates its share
    )
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
        "precision": precision_label(precision),
        "device": str(device),
        "allocator": active_allocator(),
        **levers,  # what the memory levers did: embedding rows trained, batches recomputed
    }
    results["data"] = data.info
    if not run.is_main:
        return results
    presentation = report_for(task.name)
    config = to_dict(cfg)  # as config.yaml holds it: `domainfit stress` writes the card and report again from that
    with atomic_dir(out / "model") as tmp:
        task.save(model, tokenizer, cfg, data, tmp)
        presentation.write_model_card(tmp, cfg=config, results=results, labels=data.labels)
    run.write_metrics(results)
    final = results.get("test") or results["validation"]
    presentation.write_report(task, out, final, **run_report_arguments(config, results))
    print(presentation.format_metrics(final))
    return results


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"
    }
