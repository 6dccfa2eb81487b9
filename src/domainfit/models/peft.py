"""Parameter-efficient fine-tuning: train a few percent of the weights, chosen by registered name.

    domainfit train my.yaml peft.method=lora peft.r=8                 # LoRA (Hu et al. 2022)
    domainfit train my.yaml peft.method=ia3                           # IA3 (Liu et al. 2022)
    domainfit train my.yaml peft.method=houlsby peft.adapter_size=64  # bottleneck adapters (Houlsby et al. 2019)

LoRA and IA3 come from the ``peft`` library (``task_type=SEQ_CLS``, so the classification head is trained
and saved through ``modules_to_save``); Houlsby adapters from :mod:`domainfit.models.adapters`.
``peft.save`` picks the shipped folder: ``merged`` (default) is a plain Hugging Face folder (LoRA/IA3 merged
into the weights, so ``transformers.pipeline``, the Predictor and ONNX export work unchanged; Houlsby keeps
its adapter weights inside ``model.safetensors``); ``adapter`` keeps only the trained weights beside a
reference to the base model. ``domainfit.load`` (the Predictor) reads every form; ``domainfit.json``'s
``peft`` entry says which it is.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from domainfit.config import PeftConfig
from domainfit.errors import ModelError
from domainfit.models.folder import read_folder_settings
from domainfit.registry import Registry

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@contextlib.contextmanager
def peft_quietly() -> Iterator[None]:
    """Without the FutureWarning transformers raises when peft reads its deprecated ``is_gradient_checkpointing``
    (peft's call, not the user's; printed on every LoRA model built or loaded otherwise)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def get_peft_model_quietly(model: nn.Module, config: Any) -> nn.Module:
    """``peft.get_peft_model`` under :func:`peft_quietly`."""
    from peft import get_peft_model

    with peft_quietly():
        return get_peft_model(model, config)


class PeftMethod(Protocol):
    """A registered PEFT method: wrap a model for training, write its folder, read it back for serving."""

    def apply(self, model: nn.Module, cfg: PeftConfig) -> nn.Module: ...

    def save(self, model: nn.Module, out_dir: Path, cfg: PeftConfig) -> dict[str, Any]: ...

    def load(self, model_dir: Path, meta: dict[str, Any], attn_implementation: str) -> nn.Module: ...


PEFT_METHODS: Registry = Registry("PEFT method")


def apply_peft(model: nn.Module, cfg: PeftConfig) -> nn.Module:
    """Wrap ``model`` for parameter-efficient training (``cfg.method == "none"``: unchanged)."""
    if cfg.method == "none":
        return model
    return PEFT_METHODS.get(cfg.method, key="peft.method")().apply(model, cfg)


def parameter_counts(model: nn.Module, method: str = "none") -> dict[str, Any]:
    """Trainable and total parameters (each tensor counted once) and the trainable share in percent."""
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    counts = {
        "method": method,
        "trainable": trainable,
        "total": total,
        "trainable_percent": round(100 * trainable / max(total, 1), 3),
    }
    log.info("trainable parameters (%s): %d of %d (%.3f%%)", method, trainable, total, counts["trainable_percent"])
    return counts


def save_model_folder(model: nn.Module, out_dir: Path, cfg: PeftConfig) -> dict[str, Any] | None:
    """Write the model's weights and config to ``out_dir``; returns the ``peft`` entry for domainfit.json."""
    if cfg.method == "none":
        model.save_pretrained(out_dir, safe_serialization=True)
        return None
    return PEFT_METHODS.get(cfg.method, key="peft.method")().save(model, Path(out_dir), cfg)


def load_adapted_model(model_dir: Path, *, attn_implementation: str = "sdpa") -> nn.Module | None:
    """The model of a folder whose weights need PEFT to load (adapter folders, Houlsby); None for plain ones."""
    meta = read_folder_settings(model_dir).get("peft")
    if not meta or meta.get("saved") == "merged-plain":
        return None
    method = PEFT_METHODS.get(meta.get("method", ""), key="peft.method")()
    return method.load(Path(model_dir), meta, attn_implementation)


def _base_model_path(model_dir: Path, meta: dict[str, Any]) -> str:
    """The base model an adapter folder refers to: domainfit.json's ``base_model`` (a built-in name, folder
    or hub id), resolved the way training resolved it."""
    from domainfit.models.loading import resolve_model_path

    settings = read_folder_settings(model_dir)
    base = meta.get("base_model") or settings.get("base_model")
    if not base:
        raise ModelError(
            "adapter folder without a base model reference",
            path=model_dir / "domainfit.json",
            key="peft.base_model",
            fix="retrain with peft.save: merged, or add base_model.",
        )
    return resolve_model_path(base)


def _load_base(model_dir: Path, meta: dict[str, Any], attn_implementation: str) -> nn.Module:
    """The base model with this folder's config (labels, head size); the head is then replaced by the saved one."""
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from domainfit.models.loading import load_pretrained

    config = AutoConfig.from_pretrained(model_dir)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialised classifier": it is, and it is overwritten next
    try:
        return load_pretrained(
            AutoModelForSequenceClassification.from_pretrained,
            _base_model_path(model_dir, meta),
            config=config,
            attn_implementation=attn_implementation,
        )
    finally:
        transformers.logging.set_verbosity(verbosity)


class _PeftLibraryMethod:
    """Methods from the ``peft`` library: merged or adapter folders."""

    name = ""

    def peft_config(self, cfg: PeftConfig) -> Any:
        raise NotImplementedError

    def apply(self, model: nn.Module, cfg: PeftConfig) -> nn.Module:
        try:
            return get_peft_model_quietly(model, self.peft_config(cfg))
        except ValueError as e:  # e.g. target modules not found in this architecture
            raise ModelError(
                f"peft cannot apply {self.name} to {type(model).__name__}: {e}",
                key="peft.target_modules",
                fix="set peft.target_modules to module names of this model (e.g. 'query,value' for BERT).",
            ) from e

    def save(self, model: nn.Module, out_dir: Path, cfg: PeftConfig) -> dict[str, Any]:
        meta: dict[str, Any] = {"method": self.name, "saved": cfg.save, **parameter_counts(model, self.name)}
        if cfg.save == "merged":
            merged = copy.deepcopy(model).merge_and_unload()  # the trained model itself stays wrapped
            merged.save_pretrained(out_dir, safe_serialization=True)
            meta["saved"] = "merged-plain"  # a plain folder: nothing special is needed to load it
        else:
            model.save_pretrained(out_dir, safe_serialization=True)  # adapter_config.json + adapter weights
            model.get_base_model().config.save_pretrained(out_dir)  # labels and head size for loaders
        return meta

    def load(self, model_dir: Path, meta: dict[str, Any], attn_implementation: str) -> nn.Module:
        from peft import PeftModel

        base = _load_base(model_dir, meta, attn_implementation)
        with peft_quietly():
            return PeftModel.from_pretrained(base, model_dir).merge_and_unload()


def _targets(cfg: PeftConfig) -> list[str] | None:
    names = [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    return names or None


@PEFT_METHODS.register("lora")
class LoraMethod(_PeftLibraryMethod):
    """LoRA (Hu et al. 2022): a trainable low-rank update ``B A`` (rank r, scale alpha / r) beside chosen linears."""

    name = "lora"

    def peft_config(self, cfg: PeftConfig) -> Any:
        from peft import LoraConfig, TaskType

        return LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=_targets(cfg),
        )


@PEFT_METHODS.register("ia3")
class IA3Method(_PeftLibraryMethod):
    """IA3 (Liu et al. 2022, *Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
    Learning*): learned scalings of keys, values and the feed-forward activations."""

    name = "ia3"

    def peft_config(self, cfg: PeftConfig) -> Any:
        from peft import IA3Config, TaskType

        targets = _targets(cfg)
        # with explicit targets, treat none as feed-forward (peft requires them to be a subset)
        return IA3Config(
            task_type=TaskType.SEQ_CLS, target_modules=targets, feedforward_modules=[] if targets else None
        )


@PEFT_METHODS.register("houlsby")
class HoulsbyMethod:
    """Houlsby bottleneck adapters (see :mod:`domainfit.models.adapters`)."""

    name = "houlsby"

    def apply(self, model: nn.Module, cfg: PeftConfig) -> nn.Module:
        from domainfit.models.adapters import add_houlsby_adapters, freeze_for_adapters

        add_houlsby_adapters(model, cfg.adapter_size)
        freeze_for_adapters(model)
        return model

    def save(self, model: nn.Module, out_dir: Path, cfg: PeftConfig) -> dict[str, Any]:
        from safetensors.torch import save_file

        from domainfit.models.adapters import adapter_state_dict

        meta = {
            "method": self.name,
            "saved": cfg.save,
            "adapter_size": cfg.adapter_size,
            **parameter_counts(model, self.name),
        }
        if cfg.save == "merged":  # adapters cannot be merged (they are nonlinear): one file with everything
            model.save_pretrained(out_dir, safe_serialization=True)
        else:
            save_file(adapter_state_dict(model), str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
            model.config.save_pretrained(out_dir)
        return meta

    def load(self, model_dir: Path, meta: dict[str, Any], attn_implementation: str) -> nn.Module:
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from domainfit.models.adapters import add_houlsby_adapters

        size = meta.get("adapter_size")
        if not isinstance(size, int):
            raise ModelError(
                "Houlsby adapter folder without an integer adapter_size",
                path=model_dir / "domainfit.json",
                key="peft.adapter_size",
            )
        if meta.get("saved") == "adapter":
            model = _load_base(model_dir, meta, attn_implementation)
            weights = model_dir / ADAPTER_WEIGHTS
        else:
            config = AutoConfig.from_pretrained(model_dir)
            model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
            weights = model_dir / "model.safetensors"
        add_houlsby_adapters(model, size)
        if not weights.is_file():
            raise ModelError(f"missing {weights.name}", path=model_dir, fix="copy the whole model folder.")
        missing, unexpected = load_model(model, str(weights), strict=False)
        adapters_missing = [k for k in missing if ".adapter." in k]
        if meta.get("saved") != "adapter":
            adapters_missing = list(missing)
        if adapters_missing or unexpected:
            raise ModelError(
                f"the weights do not fit the model: missing {adapters_missing[:3]}, unexpected {list(unexpected)[:3]}",
                path=weights,
                fix="the folder was changed after training; retrain or copy it again.",
            )
        return model
