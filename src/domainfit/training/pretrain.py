"""Domain-adaptive pretraining, top to bottom: a general model keeps learning its own objective on domain text.

    domainfit pretrain CONFIG [--resume] [dotted.key=value ...]
    domainfit train CLASSIFY.yaml model.name=OUTPUT/model         # then fine-tune the adapted model

Encoders continue masked-LM training (``AutoModelForMaskedLM``; token, whole-word or knowledge-guided masks,
see ``data/masking.py``), decoders causal-LM training (``AutoModelForCausalLM``). This is DAPT/TAPT in the words
of Gururangan et al. 2020 ("Don't Stop Pretraining"): on the domain's corpus, or on the task's own texts. The
corpus is streamed (``data/corpus.py``): memory stays flat at any corpus size, and checkpoints record the
stream position so ``--resume`` continues exactly. Held-out perplexity (fixed masks, so numbers compare) is
measured before, at each evaluation and after. The output is a model folder that ``domainfit train`` takes as
``model.name``, with its lineage (base model, corpus files with sizes and SHA-256, steps) in domainfit.json.

Several processes (``torchrun --nproc_per_node N -m domainfit pretrain ...``) all read the stream, so its
position is the same everywhere, and each trains on its rows of every batch (``data/batching.shard_rows``);
the held-out batches are shared out and their losses summed; the main process alone writes the run folder.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from domainfit.config import PretrainConfig, to_dict
from domainfit.data.batching import shard_rows
from domainfit.data.corpus import (
    CorpusStream,
    StreamPosition,
    count_texts,
    describe_files,
    list_text_files,
    read_texts,
    take_heldout,
)
from domainfit.data.lexicon import Lexicon
from domainfit.data.masking import CausalCollator, MaskingCollator
from domainfit.errors import DataError, ModelError
from domainfit.io.atomic import atomic_dir, write_text_atomic
from domainfit.models.folder import write_folder_settings
from domainfit.models.loading import (
    check_max_length,
    freeze_word_embeddings,
    load_pretrained,
    load_tokenizer,
    resolve_model_path,
)
from domainfit.objectives.masked_lm import lm_loss, warm_up_head
from domainfit.training.distributed import evaluation_model, refuse_sharded_launch
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
from domainfit.version import __version__

log = logging.getLogger(__name__)


def pretrain(cfg: PretrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Continue pretraining ``cfg.model.name`` on ``cfg.corpus``; write the run folder. Returns metrics.json's dict."""

    # 1. Everything the user can get wrong is checked before the output folder is touched.
    refuse_sharded_launch()  # FSDP / DeepSpeed: the checkpoints need DDP
    MemoryPlan().configure_process()  # the kernel cache cap: pretraining has no other memory lever
    with open_run_folder(cfg, resume=resume) as out:  # locked for this run; failed/interrupted recorded
        return _pretrain(cfg, out, resume=resume_or_restart(out, resume, cfg))


def _pretrain(cfg: PretrainConfig, out: Path, *, resume: bool) -> dict[str, Any]:
    reading = {"fmt": cfg.corpus.format, "column": cfg.corpus.text_column, "encoding": cfg.corpus.encoding}
    files = list_text_files(cfg.corpus.train, fmt=cfg.corpus.format, key="corpus.train")
    lexicon = Lexicon.from_file(cfg.masking.lexicon) if cfg.masking.strategy == "knowledge" else None
    if cfg.corpus.validation:
        validation = list_text_files(cfg.corpus.validation, fmt=cfg.corpus.format, key="corpus.validation")
        heldout = read_texts(validation, limit=cfg.corpus.validation_size, **reading)
        exclude: set[tuple[int, int]] = set()
    else:
        heldout, exclude = take_heldout(
            files, size=cfg.corpus.validation_size, stride=cfg.corpus.validation_stride, **reading
        )
    if not heldout:
        raise DataError(
            "no held-out text to measure perplexity on",
            path=cfg.corpus.validation or cfg.corpus.train,
            key="corpus.validation",
            fix="check the text column, or give a corpus.validation file.",
        )
    set_up_process(cfg.train)  # threads, seed: before any new head's weights are drawn
    model, tokenizer, kind, head = load_language_model(cfg)
    check_max_length(model.config, cfg.model.max_length)  # before the run folder is written
    if kind == "mlm":
        collator = MaskingCollator(
            tokenizer, cfg.masking, max_length=cfg.model.max_length, text_prefix=cfg.model.text_prefix, lexicon=lexicon
        )
    else:
        collator = CausalCollator(tokenizer, max_length=cfg.model.max_length, text_prefix=cfg.model.text_prefix)
    texts_per_step = cfg.train.batch_size * cfg.train.grad_accum_steps
    if cfg.train.max_steps:
        total_steps = cfg.train.max_steps
    else:  # one streaming pass to count (memory stays flat)
        n_texts = count_texts(files, **reading) - len(exclude)
        total_steps = max(1, math.ceil(cfg.train.epochs * n_texts / texts_per_step))
    # fixed masks on the held-out texts: perplexity before and after is measured on the same positions
    eval_generator = torch.Generator().manual_seed(cfg.train.seed)
    eval_items = collator.encode(heldout)
    eval_batches = [
        collator.collate(eval_items[i : i + cfg.train.eval_batch_size], generator=eval_generator)
        for i in range(0, len(eval_items), cfg.train.eval_batch_size)
    ]
    mixed_precision = choose_precision(cfg.train, out, resume=resume)
    start_run(
        out,
        cfg,
        resume=resume,
        extra={
            "task": f"pretrain-{kind}",
            "corpus_files": [str(f) for f in files],
            "heldout_texts": len(heldout),
            "total_steps": total_steps,
            "mixed_precision": mixed_precision,
        },
    )

    # 2. Optimisation (as in training/loop.py: Accelerate places the model and runs mixed precision).
    run = RunScaffold(out, cfg.train, mixed_precision)
    device, accelerator = run.device, run.accelerator
    model.to(device)
    if head["new"] and cfg.train.head_warmup_steps and not resume:
        _warm_up_head(model, collator, files, exclude, reading, cfg, accelerator)
    model, state = run.prepare(model, total_steps, resume=resume)
    stream = CorpusStream(
        files,
        block=cfg.corpus.shuffle_buffer,
        seed=cfg.train.seed,
        exclude=exclude,
        position=StreamPosition(**state.stream) if state.stream else None,
        group_size=cfg.train.batch_size if cfg.corpus.group_by_length else None,
        **reading,
    )
    cadence = Cadence(cfg.train.log_every, cfg.train.eval_every, cfg.train.save_every)
    running = RunningLoss(device)

    def evaluate_and_log() -> dict[str, float]:
        result = perplexity(model, eval_batches, device, causal=kind == "clm", accelerator=accelerator)
        run.log_validation(state.step, result)
        state.history.append(
            {"step": state.step, "texts_seen": state.samples_seen, "train_loss": running.last, **result}
        )
        log.info("step %d: held-out %s", state.step, result)
        return result

    def save() -> None:
        state.stream = stream.position.to_dict()
        run.save(state)

    # 3. The loop: batches come straight off the stream, tokenised and masked on the fly.
    if not resume:
        evaluate_and_log()
        if head["new"]:
            log.warning(
                "the MLM head of %s is new (%s); 'before' perplexity is %s",
                cfg.model.name,
                ", ".join(head["missing"][:4]),
                "after a head-only warm-up"
                if cfg.train.head_warmup_steps
                else "of a randomly initialised head transform (set train.head_warmup_steps to warm it up first)",
            )
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        desc=f"pretrain ({kind})",
        unit="step",
        dynamic_ncols=True,
        disable=not run.is_main,
    )
    texts = iter(stream)
    model.train()
    clock = Stopwatch(state)  # training seconds, paused while evaluating
    while state.step < total_steps:
        # every process reads the whole batch off the stream (same position everywhere) and trains on its rows
        global_batch = [next(texts) for _ in range(cfg.train.batch_size)]
        rows, share = shard_rows(global_batch, accelerator.num_processes, accelerator.process_index)
        batch = collator.collate(collator.encode(rows))
        if share:
            state.real_tokens += int(batch["attention_mask"].sum())
            state.computed_tokens += batch["attention_mask"].numel()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        # gradient accumulation: steps only at its boundaries; lm_loss calls the head itself, so autocast here
        with accelerator.accumulate(model), accelerator.autocast():
            loss = lm_loss(model, batch, causal=kind == "clm")
            accelerator.backward(loss * share if share != 1.0 else loss)
            run.optimizer_step(model.parameters())
        running.add(loss.detach())
        state.samples_seen += cfg.train.batch_size
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        state.epoch = stream.position.epoch
        bar.update(1)
        if cadence.log_due(state.step):
            mean = running.read(reset=True)
            run.log_training(state.step, mean, {f"{kind}_loss": mean})
            bar.set_postfix(loss=mean)
        if cadence.eval_due(state.step) and state.step < total_steps:
            clock.stop()
            evaluate_and_log()
            save()
            clock.start()
        elif cadence.save_due(state.step):
            save()
    bar.close()
    clock.stop()
    running.read()
    after = evaluate_and_log()
    save()

    # 4. The adapted model, its lineage, metrics.json and report.md (written by the main process).
    run.sum_tokens(state)
    unwrapped = run.unwrapped_model
    before = state.history[0]
    results: dict[str, Any] = {
        "objective": kind,
        "base_model": cfg.model.name,
        "before": {k: before[k] for k in ("loss", "perplexity", "tokens")},
        "after": {k: after[k] for k in ("loss", "perplexity", "tokens")},
        "heldout": {
            "texts": len(heldout),
            "from": cfg.corpus.validation or f"every {cfg.corpus.validation_stride}th text of the corpus",
        },
        "head": head,
        "history": state.history,
        "train": {
            "steps": state.step,
            "texts_seen": state.samples_seen,
            "epochs_started": state.epoch + 1,
            "train_runtime_s": round(state.train_seconds, 2),
            "texts_per_second": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
            "real_tokens": state.real_tokens,
            "computed_tokens": state.computed_tokens,
            "precision": precision_label(mixed_precision),
            "device": str(device),
        },
        "masking": to_dict(cfg.masking) if kind == "mlm" else None,
    }
    lineage = {
        "task": "pretrain",
        "objective": kind,
        "base_model": cfg.model.name,
        "max_length": cfg.model.max_length,
        "text_prefix": cfg.model.text_prefix,
        "corpus": describe_files(files),
        "steps": state.step,
        "texts_seen": state.samples_seen,
        "masking": results["masking"],
        "new_head": head["new"],
        "perplexity": {"before": results["before"]["perplexity"], "after": results["after"]["perplexity"]},
        "domainfit_version": __version__,
    }
    results["corpus"] = lineage["corpus"]
    if not run.is_main:
        run.finish(steps=state.step)
        return results
    with atomic_dir(out / "model") as tmp:
        unwrapped.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        lineage["carried_from_base"] = carry_pooler(cfg.model.name, head["unused"], unwrapped, tmp)
        write_folder_settings(tmp, lineage)
    run.write_metrics(results)
    write_text_atomic(out / "report.md", format_report(cfg, results))
    run.finish(steps=state.step)
    print(
        f"held-out perplexity: {results['before']['perplexity']:.2f} before -> "
        f"{results['after']['perplexity']:.2f} after"
    )
    return results


def load_language_model(cfg: PretrainConfig) -> tuple[torch.nn.Module, Any, str, dict[str, Any]]:
    """(model, tokenizer, "mlm" | "clm", head info) for the configured model.

    Head info says whether the LM head is new (its weights were not in the checkpoint: e.g. sentence
    encoders ship without one), which keys were missing, and which checkpoint weights the LM model does not
    use (a BERT pooler), so they can be carried into the saved folder.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    tokenizer = load_tokenizer(cfg.model.name)
    config = load_pretrained(AutoConfig.from_pretrained, cfg.model.name)
    kind = cfg.train.objective
    if kind == "auto":
        if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
            kind = "mlm"
        elif config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            kind = "clm"
        else:
            raise ModelError(
                f"model type {config.model_type!r} has neither a masked-LM nor a causal-LM class in transformers",
                key="model.name",
                fix="use a BERT-like encoder (mlm) or a GPT/Llama-like decoder (clm).",
            )
    loader = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"attn_implementation": cfg.model.attn_implementation, "output_loading_info": True}
    if cfg.model.dropout is not None:
        kwargs["hidden_dropout_prob"] = cfg.model.dropout
    try:
        model, info = load_pretrained(loader.from_pretrained, cfg.model.name, **kwargs)
    except ValueError as e:  # transformers: "Unrecognized configuration class ... for this kind of AutoModel"
        raise ModelError(
            f"cannot load {cfg.model.name!r} as a {kind} model: {e}",
            key="train.objective",
            fix="set train.objective to the model's kind (mlm for encoders, clm for decoders).",
        ) from e
    if cfg.model.freeze_embeddings:  # the tied MLM decoder stays fixed with it; its bias and transform train
        freeze_word_embeddings(model)
    prefix = model.base_model_prefix
    missing = sorted(info["missing_keys"])
    head_missing = [k for k in missing if not k.startswith(f"{prefix}.")]
    head = {
        "new": bool(head_missing),
        "missing": head_missing,
        "unused": sorted(info["unexpected_keys"]),
        "note": (
            "the checkpoint had no LM-head weights: the head transform is freshly initialised (its decoder is "
            "tied to the pretrained word embeddings)"
        )
        if head_missing
        else "the LM head came with the checkpoint",
    }
    return model, tokenizer, kind, head


def _warm_up_head(model, collator, files, exclude, reading, cfg: PretrainConfig, accelerator) -> None:
    """Train only the new LM head (encoder frozen) so 'before' perplexity measures the encoder, not a random head."""
    base = model.base_model
    frozen = [p for p in base.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    head_params = [p for p in model.parameters() if p.requires_grad]
    stream = iter(
        CorpusStream(files, block=cfg.corpus.shuffle_buffer, seed=cfg.train.seed + 1, exclude=exclude, **reading)
    )
    model.train()

    def batch_loss() -> torch.Tensor:
        batch = collator.collate(collator.encode([next(stream) for _ in range(cfg.train.batch_size)]))
        with accelerator.autocast():
            return lm_loss(model, {k: v.to(accelerator.device) for k, v in batch.items()})

    # a fresh head takes larger steps than the encoder will (the joint objective's warm-up uses 1e-3)
    last = warm_up_head(
        head_params,
        batch_loss,
        steps=cfg.train.head_warmup_steps,
        lr=max(10 * cfg.train.learning_rate, 1e-3),
        desc="head warm-up",
    )
    for p in frozen:
        p.requires_grad_(True)
    log.info("head warm-up: %d steps, last loss %.3f", cfg.train.head_warmup_steps, last)


@torch.inference_mode()
def perplexity(
    model, batches: list[dict[str, torch.Tensor]], device: torch.device, *, causal: bool = False, accelerator=None
) -> dict[str, float]:
    """Held-out loss (mean over predicted tokens) and its exponential; MLM: pseudo-perplexity of masked tokens.
    With ``accelerator`` and several processes, each scores every n-th batch and the sums are added up."""
    sharded = accelerator is not None and accelerator.num_processes > 1
    if sharded:
        model = evaluation_model(model, accelerator)  # no DDP collective in a forward: shares may be unequal
        batches = batches[accelerator.process_index :: accelerator.num_processes]
    was_training = model.training
    model.eval()
    total, tokens = torch.zeros((), device=device, dtype=torch.float64), 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        total += lm_loss(model, batch, causal=causal, reduction="sum").double()
        tokens += int((batch["labels"][:, 1:] if causal else batch["labels"]).ne(-100).sum())
    model.train(was_training)
    if sharded:
        summed = accelerator.reduce(
            torch.stack([total, torch.tensor(float(tokens), device=device, dtype=torch.float64)]), reduction="sum"
        )
        total, tokens = summed[0], int(summed[1])
    mean = float(total) / max(tokens, 1)
    return {"loss": round(mean, 5), "perplexity": round(math.exp(min(mean, 50.0)), 4), "tokens": tokens}


def carry_pooler(name: str, unused: list[str], model, folder: Path) -> list[str]:
    """Copy the base checkpoint's pooler (unused by the LM model) into the saved weights.

    ``AutoModelForSequenceClassification`` (BERT) classifies from the pooler; without this, fine-tuning the
    adapted folder would start from a random pooler instead of the base model's trained one.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    keys = [k for k in unused if ".pooler." in f".{k}"]
    source = Path(resolve_model_path(name)) / "model.safetensors"
    target = folder / "model.safetensors"
    if not keys or not source.is_file() or not target.is_file():
        if keys:
            log.warning("the base model's pooler (%s) could not be carried over: no single model.safetensors", keys[0])
        return []
    weights = load_file(str(target))
    prefix = model.base_model_prefix
    with safe_open(str(source), framework="pt") as f:
        for key in keys:
            weights[key if key.startswith(f"{prefix}.") else f"{prefix}.{key}"] = f.get_tensor(key)
    save_file(weights, str(target), metadata={"format": "pt"})
    return keys


def format_report(cfg: PretrainConfig, results: dict[str, Any]) -> str:
    """A short report.md: what was adapted on what, and whether held-out perplexity went down."""
    b, a = results["before"], results["after"]
    change = 100.0 * (a["perplexity"] - b["perplexity"]) / b["perplexity"]
    corpus_bytes = sum(f["bytes"] for f in results["corpus"])
    lines = [
        f"# domainfit pretrain: {Path(cfg.output.dir).name}",
        "",
        f"Continued **{results['objective'].upper()}** pretraining of `{cfg.model.name}` on "
        f"{len(results['corpus'])} corpus file(s), {corpus_bytes / 1e6:.1f} MB: "
        f"{results['train']['steps']} steps, {results['train']['texts_seen']} texts"
        + (
            f", masking `{cfg.masking.strategy}` at {cfg.masking.probability:.0%}."
            if results["objective"] == "mlm"
            else "."
        ),
        "",
        "| held-out | loss | perplexity | predicted tokens |",
        "|---|---|---|---|",
        f"| before | {b['loss']:.4f} | {b['perplexity']:.2f} | {b['tokens']} |",
        f"| after | {a['loss']:.4f} | {a['perplexity']:.2f} | {a['tokens']} |",
        "",
        f"Perplexity changed by **{change:+.1f}%** on {results['heldout']['texts']} held-out texts "
        f"({results['heldout']['from']}); the masks are fixed, so the two rows score the same positions.",
        "",
    ]
    if results["head"]["new"]:
        lines += [
            f"**Caveat:** {results['head']['note']}. "
            + (
                f"The head alone was trained for {cfg.train.head_warmup_steps} steps before 'before' was measured."
                if cfg.train.head_warmup_steps
                else "'Before' was measured with that untrained head, so it overstates the base model's perplexity; "
                "set `train.head_warmup_steps` for a fair baseline."
            ),
            "",
        ]
    if len(results["history"]) > 2:
        lines += ["| step | texts seen | held-out loss | perplexity |", "|---|---|---|---|"]
        lines += [
            f"| {h['step']} | {h['texts_seen']} | {h['loss']:.4f} | {h['perplexity']:.2f} |" for h in results["history"]
        ]
        lines.append("")
    lines += [f"Fine-tune it: `domainfit train YOUR_TASK.yaml model.name={Path(cfg.output.dir) / 'model'}`", ""]
    return "\n".join(lines)
