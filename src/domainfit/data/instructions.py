"""Instruction/response data for the ``generation`` task: read JSONL, check every line, split, format prompts.

    {"instruction": "Which disease do these symptoms most likely indicate?",
     "input": "I have a red, itchy rash on my elbows...", "response": "These symptoms most likely indicate Psoriasis."}

Keys are configurable (``generation.instruction_key`` / ``input_key`` / ``response_key``); ``input`` may be
absent or empty. Every problem is reported with the file, line and key. Prompts use the tokenizer's chat
template when it has one (SmolLM2-Instruct does), else a plain "### Instruction / ### Response" template.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.errors import DataError


@dataclass(frozen=True)
class InstructionExample:
    """One training pair; ``line`` is the 1-based line in its file (0 when it did not come from a file)."""

    instruction: str
    input: str
    response: str
    line: int = 0


def read_instructions(
    path: str | Path,
    *,
    instruction_key: str = "instruction",
    input_key: str = "input",
    response_key: str = "response",
    require_response: bool = True,
    encoding: str = "utf-8",
) -> list[InstructionExample]:
    """Read a JSONL file of instruction/response objects.

    Args:
        path: the ``.jsonl`` file.
        instruction_key: key of the instruction text (required, non-empty string).
        input_key: key of the optional input text (absent, null or a string).
        response_key: key of the reference response.
        require_response: False for input to ``domainfit predict``: the response is read if present, else "".
        encoding: text encoding.

    Raises:
        DataError: naming the file, line and key of the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path, fix="check data.train / data.validation / data.test.")
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise DataError(
            f"the generation task reads JSON Lines files (.jsonl), found {path.suffix or 'no extension'!r}",
            path=path,
            fix='write one object per line: {"instruction": ..., "input": ..., "response": ...}',
        )
    examples = []
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as e:
        raise DataError(
            f"not {encoding} text ({e.reason} at byte {e.start})",
            path=path,
            fix="save the file as UTF-8 or set data.encoding.",
        ) from e
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(
                f"not valid JSON: {e.msg} (character {e.colno})",
                path=path,
                line=number,
                fix="each line must be one complete JSON object.",
            ) from e
        if not isinstance(row, dict):
            raise DataError(
                f"expected a JSON object, found {type(row).__name__}",
                path=path,
                line=number,
                fix=f'write {{"{instruction_key}": ..., "{response_key}": ...}}',
            )
        instruction = _text(row, instruction_key, path, number, required=True, setting="instruction_key")
        text_input = _text(row, input_key, path, number, required=False, setting="input_key")
        response = _text(row, response_key, path, number, required=require_response, setting="response_key")
        examples.append(InstructionExample(instruction, text_input, response, number))
    if not examples:
        raise DataError(
            "no examples: the file is empty", path=path, fix="check the file and the generation.*_key settings."
        )
    return examples


def _text(row: dict[str, Any], key: str, path: Path, line: int, *, required: bool, setting: str) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if value is None:
        keys = ", ".join(map(str, row)) or "none"
        raise DataError(
            f"missing key {key!r} (keys on this line: {keys})",
            path=path,
            line=line,
            column=key,
            fix=f"add it, or set generation.{setting} to the key your file uses.",
        )
    if not isinstance(value, str):
        raise DataError(
            f"expected a string, found {type(value).__name__} {str(value)[:40]!r}",
            path=path,
            line=line,
            column=key,
            fix="store the text as a JSON string.",
        )
    if required and not value.strip():
        raise DataError("empty text", path=path, line=line, column=key, fix="remove the line or fill in the text.")
    return value


def deduplicate(examples: list[InstructionExample]) -> tuple[list[InstructionExample], int]:
    """Drop repeated (instruction, input, response) triples, whitespace- and case-normalised; keep the first."""
    seen, kept = set(), []
    for e in examples:
        key = tuple(" ".join(t.lower().split()) for t in (e.instruction, e.input, e.response))
        if key not in seen:
            seen.add(key)
            kept.append(e)
    return kept, len(examples) - len(kept)


def split_off(
    examples: list[InstructionExample], fractions: dict[str, float], *, seed: int
) -> dict[str, list[InstructionExample]]:
    """Shuffle with ``seed`` and cut ``fractions`` (e.g. {"validation": 0.1}) off the end; the rest is "train"."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    splits, start = {}, len(order)
    for name, fraction in fractions.items():
        n = max(1, round(fraction * len(order))) if fraction > 0 else 0
        splits[name], start = order[start - n : start], start - n
    splits["train"] = order[:start]
    return splits


# ----------------------------------------------------------------------------------------------------------
# Prompts


@dataclass(frozen=True)
class PromptFormat:
    """How an instruction (and input) becomes the text the model continues."""

    use_chat_template: bool = True
    system_prompt: str | None = None
    prompt_template: str = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"

    def render(self, tokenizer: Any, instruction: str, text_input: str = "") -> str:
        """The prompt text, ending where the response starts (chat: after the assistant header)."""
        if self.use_chat_template and getattr(tokenizer, "chat_template", None):
            user = f"{instruction}\n\n{text_input}" if text_input else instruction
            messages = [{"role": "user", "content": user}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        input_block = f"### Input:\n{text_input}\n\n" if text_input else ""
        return self.prompt_template.format(instruction=instruction, input_block=input_block)

    def to_dict(self) -> dict[str, Any]:
        return {
            "use_chat_template": self.use_chat_template,
            "system_prompt": self.system_prompt,
            "prompt_template": self.prompt_template,
        }


def encode_pair(tokenizer: Any, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + response + EOS, and where the response starts (labels before it are masked).

    The prompt is tokenised on its own (it already holds any special tokens of the chat template) so the
    boundary is exact. Too long a pair keeps at least half of ``max_length`` for the response and cuts the
    prompt in its middle, so both the instruction's start and the chat markers before the response survive.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    response_ids = response_ids[: max(max_length - len(prompt_ids), max_length // 2)]
    room = max_length - len(response_ids)
    if len(prompt_ids) > room:
        tail = min(16, room // 2)
        prompt_ids = prompt_ids[: room - tail] + prompt_ids[len(prompt_ids) - tail :]
    return prompt_ids + response_ids, len(prompt_ids)
