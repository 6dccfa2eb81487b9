"""Generate responses with a model folder written by the ``generation`` task.

    domainfit predict runs/s2d-gen/model questions.jsonl --output answers.jsonl [--max-new-tokens 64]

    import domainfit
    gen = domainfit.load("runs/s2d-gen/model")
    gen.predict([{"instruction": "Which disease do these symptoms most likely indicate?",
                  "input": "I have a red, scaly rash on my elbows."}])
    # [{'generated': 'These symptoms most likely indicate Psoriasis.'}]

The folder holds the merged model (plain Hugging Face causal LM) and, with LoRA, ``adapter/``; when only the
adapter was saved (``generation.save_merged: false``) the base model named in ``domainfit.json`` is loaded
and the adapter applied. Decoding is greedy by default, prompts are batched by length with left padding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from domainfit.data.instructions import InstructionExample, PromptFormat, read_instructions
from domainfit.errors import DataError, ModelError
from domainfit.models.causal_lm import ADAPTER_DIR, generate_responses
from domainfit.models.folder import read_folder_settings
from domainfit.models.loading import check_model_folder, check_tokenizer_files
from domainfit.serving.files import check_input_file, check_output_file, write_output
from domainfit.serving.registry import PREDICTORS

TASK = "generation"


def read_generation_settings(model_dir: str | Path) -> dict[str, Any] | None:
    """``domainfit.json`` of a generation model folder, or None when the folder holds another task."""
    data = read_folder_settings(model_dir)
    return data if data.get("task") == TASK else None


class Generator:
    """A loaded generation model: ``predict`` turns instructions (and inputs) into responses."""

    task = TASK
    backend = "torch"

    def __init__(self, model: Any, tokenizer: Any, settings: dict[str, Any]) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.prompt = PromptFormat(**settings.get("prompt", {}))
        self.keys = settings.get("keys", {"instruction": "instruction", "input": "input"})
        self.max_new_tokens = int(settings.get("max_new_tokens", 64))
        self.max_length = int(settings.get("max_length", 512))
        self.labels: list[str] = []

    def __repr__(self) -> str:
        return f"Generator(base_model={self.settings.get('base_model')!r}, max_new_tokens={self.max_new_tokens})"

    def prompts(self, items: Sequence[str | dict[str, Any] | InstructionExample]) -> list[str]:
        """The prompt text of each item: a string is an instruction; a dict uses the folder's JSON keys."""
        texts = []
        for n, item in enumerate(items):
            if isinstance(item, InstructionExample):
                instruction, text_input = item.instruction, item.input
            elif isinstance(item, str):
                instruction, text_input = item, ""
            elif isinstance(item, dict) and isinstance(item.get(self.keys["instruction"]), str):
                instruction, text_input = item[self.keys["instruction"]], item.get(self.keys["input"]) or ""
            else:
                raise DataError(
                    f"item {n} is neither a string nor a dict with a string {self.keys['instruction']!r}",
                    fix=f'pass "an instruction" or {{"{self.keys["instruction"]}": ..., "{self.keys["input"]}": ...}}',
                )
            texts.append(self.prompt.render(self.tokenizer, instruction, text_input))
        return texts

    @torch.inference_mode()
    def predict(
        self,
        items: Sequence[str | dict[str, Any] | InstructionExample],
        *,
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, str]]:
        """Greedy responses, one ``{"generated": text}`` per item, in order."""
        if isinstance(items, (str, dict)):
            raise DataError("predict takes a list of items", fix="wrap a single item in a list: predict([item]).")
        texts = generate_responses(
            self.model,
            self.tokenizer,
            self.prompts(items),
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            batch_size=batch_size or 8,
            max_prompt_tokens=self.max_length,
        )
        return [{"generated": t} for t in texts]


def load_generator(model_dir: str | Path, *, backend: str = "auto", num_threads: int | None = None) -> Generator:
    """Load a generation model folder (merged model, or base + ``adapter/``) for greedy decoding on PyTorch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir).expanduser()
    settings = read_generation_settings(path)
    if settings is None:
        raise ModelError(
            "not a generation model folder (domainfit.json does not say task: generation)",
            path=path,
            fix="give the model/ folder written by `domainfit train` with task: generation.",
        )
    if backend not in ("auto", "torch"):
        raise ModelError(
            f"generation models run on PyTorch only; backend {backend!r} is not available",
            key="backend",
            fix="use backend='torch' (or 'auto').",
        )
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    check_tokenizer_files(path, key=None)
    for folder in (path, path / ADAPTER_DIR):  # no custom code, no pickle weights, intact safetensors
        if folder.is_dir():
            check_model_folder(folder, key=None)
    if (path / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    elif (path / ADAPTER_DIR / "adapter_config.json").is_file():
        from peft import PeftModel

        from domainfit.models.causal_lm import load_causal_lm
        from domainfit.models.peft import peft_quietly

        base, _ = load_causal_lm(settings["base_model"])
        with peft_quietly():
            model = PeftModel.from_pretrained(base, str(path / ADAPTER_DIR))
        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        raise ModelError(
            "the folder holds neither a model (config.json) nor a LoRA adapter (adapter/)",
            path=path,
            fix="give the model/ folder written by `domainfit train`.",
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Generator(model, tokenizer, settings)


def predict_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
) -> int:
    """Generate for every line of a ``.jsonl`` (instruction/input objects) or ``.txt`` (one instruction a line)
    file and write JSONL with the inputs, the reference if given, and ``generated``. Returns the count."""
    input_path = check_input_file(input_path)
    out = check_output_file(output_path)  # before the model is loaded and the long generation starts
    generator = load_generator(model_dir)
    if input_path.suffix.lower() == ".txt":
        lines = input_path.read_text(encoding="utf-8").splitlines()
        examples = [InstructionExample(t.strip(), "", "", n) for n, t in enumerate(lines, 1) if t.strip()]
    else:
        keys = generator.keys
        examples = read_instructions(
            input_path,
            instruction_key=keys["instruction"],
            input_key=keys["input"],
            response_key=keys.get("response", "response"),
            require_response=False,
        )
    results = generator.predict(examples, max_new_tokens=max_new_tokens, batch_size=batch_size)
    with write_output(out) as f:
        for e, r in zip(examples, results):
            row = {
                "instruction": e.instruction,
                "input": e.input,
                **({"reference": e.response} if e.response else {}),
                "generated": r["generated"],
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(results)


PREDICTORS.register(TASK, load_generator)
