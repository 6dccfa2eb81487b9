"""Read named-entity data: CoNLL/IOB token files and JSON/JSONL files with character-offset spans.

    from domainfit.data.ner_readers import read_ner_examples
    examples = read_ner_examples("NCBI-disease-IOB/train.tsv")          # token<TAB>tag lines
    examples = read_ner_examples("CMeEE_train.json")                     # {"text", "entities": [...]}

Both formats become :class:`NerExample` records: the sentence text plus entity spans as character offsets
(end exclusive) into that text; CoNLL records also keep their words and IOB2 tags. Every problem a user can
cause (a missing tag column, a tag not in IOB2 form, a span outside its text, a span whose text does not
match, overlapping spans) raises :class:`~domainfit.errors.DataError` naming the file, line and column,
what was expected, and how to fix it. Nothing is read lazily.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.errors import DataError

_TAG = re.compile(r"^(?:O|([BI])-(\S.*))$")
SPAN_SUFFIXES = (".json", ".jsonl", ".ndjson")
# key pairs tried in order when a key is "auto": CMeEE writes start_idx/end_idx (end inclusive)/type/entity
_AUTO_ENTITIES = ("entities", "spans")
_AUTO_START = ("start_idx", "start")
_AUTO_END = ("end_idx", "end")
_AUTO_LABEL = ("type", "label")
_AUTO_SPAN_TEXT = ("entity", "text")


@dataclass(frozen=True)
class Span:
    """One entity: ``text[start:end]`` has type ``label`` (character offsets, end exclusive)."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class NerExample:
    """One sentence and its entities.

    Attributes:
        text: the sentence (CoNLL words joined by single spaces).
        spans: entities as character spans into ``text``, sorted, never overlapping.
        line: 1-based line where the record starts (a CoNLL sentence's first word, a JSONL line, or the
            line where a JSON array item starts).
        words: the CoNLL words (None for span files, whose words the tokenizer finds).
        tags: the IOB2 tag of each CoNLL word (None for span files).
    """

    text: str
    spans: tuple[Span, ...]
    line: int
    words: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SpanKeys:
    """JSON key names of a span file; "auto" tries the CMeEE names, then the common ones."""

    text: str = "text"
    entities: str = "auto"
    start: str = "auto"
    end: str = "auto"
    label: str = "auto"
    end_inclusive: bool | None = None  # None: True when the end key is CMeEE's end_idx


def read_ner_examples(
    path: str | Path,
    *,
    format: str = "auto",
    encoding: str = "utf-8",
    tag_scheme: str = "iob2",
    keys: SpanKeys = SpanKeys(),
    overlapping_spans: str = "error",
) -> list[NerExample]:
    """Read a CoNLL or span file into :class:`NerExample` records.

    Args:
        path: the file.
        format: "conll", "spans", or "auto" (spans for .json/.jsonl/.ndjson, CoNLL otherwise).
        encoding: text encoding.
        tag_scheme: "iob2" (an I- tag must continue an entity) or "iob1" (converted to IOB2 on reading).
        keys: key names of span files.
        overlapping_spans: "error", or "keep_longer" (of two overlapping spans keep the longer, then the first).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path, fix="check the path in data.train / data.validation / data.test.")
    if format == "auto":
        format = "spans" if path.suffix.lower() in SPAN_SUFFIXES else "conll"
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise DataError(
            f"not valid {encoding} text (byte {e.start})",
            path=path,
            fix="set data.encoding to the file's encoding, e.g. latin-1.",
        ) from e
    examples = (
        read_conll_text(text, path, tag_scheme=tag_scheme)
        if format == "conll"
        else read_span_text(text, path, keys=keys, overlapping_spans=overlapping_spans)
    )
    if not examples:
        raise DataError(
            "no sentences found",
            path=path,
            fix="a CoNLL file needs 'token<TAB>tag' lines; a span file needs objects with a text.",
        )
    return examples


# ---------------------------------------------------------------------------------------------------------
# CoNLL / IOB


def read_conll_text(content: str, path: Path, *, tag_scheme: str = "iob2") -> list[NerExample]:
    """Parse ``token<TAB>tag`` lines (or whitespace-separated, tag last), blank line between sentences."""
    examples: list[NerExample] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if not line:
            if words:
                examples.append(_conll_sentence(words, tags, first_line, path, tag_scheme))
                words, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) < 2:
            raise DataError(
                f"expected 'token<TAB>tag', found one column: {raw!r:.80}",
                path=path,
                line=number,
                column=2,
                fix="give every token a tag (O, B-TYPE or I-TYPE) after a tab; separate sentences by an empty line.",
            )
        tag = fields[-1]
        match = _TAG.match(tag)
        if match is None:
            raise DataError(
                f"tag {tag!r} is not in IOB2 form (expected O, B-TYPE or I-TYPE)",
                path=path,
                line=number,
                column=len(fields),
                fix="write entity tags as B-TYPE for the first word and I-TYPE for the rest, O outside.",
            )
        if not words:
            first_line = number
        words.append(fields[0])
        tags.append(tag if tag == "O" else f"{match.group(1)}-{match.group(2).strip()}")
        if tag_scheme == "iob2" and tag.startswith("I-") and not _continues(tags[:-1], tag[2:]):
            previous = tags[-2] if len(tags) > 1 else "the sentence start"
            raise DataError(
                f"tag {tag!r} follows {previous!r}: in IOB2 an entity starts with B-{tag[2:]}",
                path=path,
                line=number,
                column=len(fields),
                fix="this looks like IOB1 tagging: set ner.tag_scheme: iob1 to convert it, "
                f"or change the tag to B-{tag[2:]}.",
            )
    if words:
        examples.append(_conll_sentence(words, tags, first_line, path, tag_scheme))
    return examples


def _continues(previous_tags: list[str], entity_type: str) -> bool:
    return bool(previous_tags) and previous_tags[-1] in (f"B-{entity_type}", f"I-{entity_type}")


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (B- only between two adjacent entities of one type) -> IOB2 (every entity starts with B-)."""
    out: list[str] = []
    for tag in tags:
        if tag.startswith("I-") and not _continues(out, tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def _conll_sentence(words: list[str], tags: list[str], line: int, path: Path, tag_scheme: str) -> NerExample:
    if tag_scheme == "iob1":
        tags = iob1_to_iob2(tags)
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    spans = [
        Span(starts[first], starts[last] + len(words[last]), label) for label, first, last in tags_to_entities(tags)
    ]
    return NerExample(text=" ".join(words), spans=tuple(spans), line=line, words=tuple(words), tags=tuple(tags))


def tags_to_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, first, last)`` (``last`` inclusive) of an IOB2 tag sequence.

    Strict IOB2, as seqeval's ``mode="strict"``: an entity is ``B-X`` followed by ``I-X``...; an ``I-X``
    that continues nothing is not an entity.
    """
    entities: list[tuple[str, int, int]] = []
    current: list[Any] | None = None
    for i, tag in enumerate(tags):
        if current is not None and tag == f"I-{current[0]}":
            current[2] = i
            continue
        if current is not None:
            entities.append(tuple(current))  # type: ignore[arg-type]
            current = None
        if tag.startswith("B-"):
            current = [tag[2:], i, i]
    if current is not None:
        entities.append(tuple(current))  # type: ignore[arg-type]
    return entities


# ---------------------------------------------------------------------------------------------------------
# JSON / JSONL spans


def read_span_text(
    content: str, path: Path, *, keys: SpanKeys = SpanKeys(), overlapping_spans: str = "error"
) -> list[NerExample]:
    """Parse a JSON array or JSON Lines of ``{"text": ..., "entities": [{start, end, label}...]}``."""
    stripped = content.lstrip("\ufeff \t\r\n")
    records = _json_array(content, path) if stripped.startswith("[") else _json_lines(content, path)
    return [_span_record(record, line, path, keys, overlapping_spans) for line, record in records]


def _json_lines(content: str, path: Path) -> list[tuple[int, Any]]:
    records = []
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, json.loads(raw)))
        except json.JSONDecodeError as e:
            raise DataError(
                f"not valid JSON: {e.msg}",
                path=path,
                line=number,
                column=e.colno,
                fix="each line of a .jsonl file must be one complete JSON object.",
            ) from e
    return records


def _json_array(content: str, path: Path) -> list[tuple[int, Any]]:
    """Items of a top-level JSON array with the line each starts on (for error messages)."""
    decoder = json.JSONDecoder()
    start = content.index("[") + 1
    records, position = [], start
    while True:
        position = _skip(content, position, " \t\r\n")
        if position < len(content) and content[position] == "]":
            return records
        try:
            item, end = decoder.raw_decode(content, position)
        except json.JSONDecodeError as e:
            raise DataError(
                f"not valid JSON: {e.msg}",
                path=path,
                line=e.lineno,
                column=e.colno,
                fix="check the JSON syntax there (a missing comma or quote).",
            ) from e
        records.append((content.count("\n", 0, position) + 1, item))
        position = _skip(content, end, " \t\r\n")
        if position < len(content) and content[position] == ",":
            position += 1
        elif position >= len(content) or content[position] != "]":
            line = content.count("\n", 0, position) + 1
            raise DataError(
                "not valid JSON: expected ',' or ']' after an array item",
                path=path,
                line=line,
                fix="separate the objects of the array with commas and close it with ].",
            )


def _skip(content: str, position: int, chars: str) -> int:
    while position < len(content) and content[position] in chars:
        position += 1
    return position


def _pick(record: dict, key: str, auto: tuple[str, ...]) -> str | None:
    if key != "auto":
        return key if key in record else None
    return next((k for k in auto if k in record), None)


def _span_record(record: Any, line: int, path: Path, keys: SpanKeys, overlapping: str) -> NerExample:
    if not isinstance(record, dict):
        raise DataError(
            f"expected a JSON object, found {type(record).__name__}",
            path=path,
            line=line,
            fix='write each record as {"text": ..., "entities": [...]}.',
        )
    text = record.get(keys.text)
    if not isinstance(text, str) or not text.strip():
        raise DataError(
            f"expected a non-empty text string under {keys.text!r}, found {text!r:.60}",
            path=path,
            line=line,
            column=keys.text,
            fix="set ner.text_key to the key that holds the text.",
        )
    entities_key = _pick(record, keys.entities, _AUTO_ENTITIES)
    entities = record.get(entities_key, []) if entities_key else []
    if not isinstance(entities, list):
        raise DataError(
            f"expected a list of spans, found {type(entities).__name__}",
            path=path,
            line=line,
            column=entities_key,
            fix="write the entities as a JSON list of objects.",
        )
    spans = [_span(item, i, text, line, path, keys, entities_key or "entities") for i, item in enumerate(entities)]
    spans = _remove_overlaps(sorted(set(spans), key=lambda s: (s.start, -s.end, s.label)), line, path, overlapping)
    return NerExample(text=text, spans=tuple(spans), line=line)


def _span(item: Any, index: int, text: str, line: int, path: Path, keys: SpanKeys, entities_key: str) -> Span:
    where = f"{entities_key}[{index}]"
    if not isinstance(item, dict):
        raise DataError(
            f"expected a span object, found {item!r:.60}",
            path=path,
            line=line,
            column=where,
            fix='write spans as {"start": 0, "end": 4, "label": "TYPE"}.',
        )
    start_key = _pick(item, keys.start, _AUTO_START)
    end_key = _pick(item, keys.end, _AUTO_END)
    label_key = _pick(item, keys.label, _AUTO_LABEL)
    for name, found, wanted in (
        ("start", start_key, keys.start),
        ("end", end_key, keys.end),
        ("label", label_key, keys.label),
    ):
        if found is None:
            tried = (
                " or ".join(repr(k) for k in {"start": _AUTO_START, "end": _AUTO_END, "label": _AUTO_LABEL}[name])
                if wanted == "auto"
                else repr(wanted)
            )
            raise DataError(
                f"span has no {name} key (looked for {tried}); its keys are {sorted(item)}",
                path=path,
                line=line,
                column=where,
                fix=f"set ner.{name}_key to the key that holds the span {name}.",
            )
    start, end, label = item[start_key], item[end_key], item[label_key]
    for name, value in ((start_key, start), (end_key, end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(
                f"expected an integer character offset, found {value!r:.40}",
                path=path,
                line=line,
                column=f"{where}.{name}",
                fix="give character offsets as integers.",
            )
    if not isinstance(label, str) or not label.strip():
        raise DataError(
            f"expected a non-empty label string, found {label!r:.40}",
            path=path,
            line=line,
            column=f"{where}.{label_key}",
            fix="give every span an entity type.",
        )
    inclusive = keys.end_inclusive if keys.end_inclusive is not None else end_key == "end_idx"
    stop = end + 1 if inclusive else end
    if not 0 <= start < stop <= len(text):
        shown = f"[{start}, {end}]" if inclusive else f"[{start}, {end})"
        raise DataError(
            f"span {shown} lies outside the text (length {len(text)}) or is empty",
            path=path,
            line=line,
            column=where,
            fix="offsets count characters from 0; check ner.end_inclusive "
            f"(now {'inclusive' if inclusive else 'exclusive'} end).",
        )
    text_key = next((k for k in _AUTO_SPAN_TEXT if k in item and k not in (start_key, end_key, label_key)), None)
    if text_key is not None and isinstance(item[text_key], str) and item[text_key] != text[start:stop]:
        raise DataError(
            f"span text mismatch: text[{start}:{stop}] is {text[start:stop]!r} but the span says {item[text_key]!r}",
            path=path,
            line=line,
            column=f"{where}.{text_key}",
            fix="fix the offsets; if they are all off by one, set ner.end_inclusive "
            f"to {'false' if inclusive else 'true'}.",
        )
    return Span(start, stop, label.strip())


def _remove_overlaps(spans: list[Span], line: int, path: Path, overlapping: str) -> list[Span]:
    kept: list[Span] = []
    for span in spans:
        if kept and span.start < kept[-1].end:
            other = kept[-1]
            if overlapping == "error":
                raise DataError(
                    f"spans overlap: {other.label} [{other.start}, {other.end}) and {span.label} "
                    f"[{span.start}, {span.end})",
                    path=path,
                    line=line,
                    fix="IOB tagging holds one entity per character: remove one, or set "
                    "ner.overlapping_spans: keep_longer (nested entities are dropped).",
                )
            if span.end - span.start > other.end - other.start:
                kept[-1] = span
            continue
        kept.append(span)
    return kept
