"""A cap on text length in characters, applied before tokenising, so memory stays bounded whatever the input.

    domainfit predict MODEL_DIR in.csv --output out.csv --max-chars 20000
    domainfit.load(MODEL_DIR, max_chars=20000).predict(texts)

The tokenizer encodes a whole text before it truncates, so one 50 MB text took 294 s and 7.2 GB although
the model read only its first 512 tokens. The default cap is far above what the model reads: 16 characters
per token of ``max_length`` (8,192 characters at 512 tokens), where English runs at about 4-5 characters a
token and Chinese at 1-2, so a text the model reads whole is never cut. Models that read the whole text in
windows (``model.long_text: windows``, token classification) get 128 times that (about 1 MB of text at 512
tokens, some 500 windows): enough for a long report, bounded for a runaway file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from domainfit.errors import DomainfitError

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 16
WINDOWED_FACTOR = 128


def default_max_chars(max_length: int, *, windows: bool) -> int:
    """The default cap for a model reading ``max_length`` tokens (per window, if ``windows``)."""
    return max_length * CHARS_PER_TOKEN * (WINDOWED_FACTOR if windows else 1)


def check_max_chars(max_chars: int | None) -> None:
    """Refuse anything but None or a positive integer."""
    if max_chars is None:
        return
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise DomainfitError(
            f"max_chars must be a positive integer, got {max_chars!r}",
            fix="e.g. --max-chars 20000 (or leave it out for the model's default).",
        )


def cap_texts(texts: Sequence[str], max_chars: int, *, reads: str) -> list[str]:
    """Cut every text to its first ``max_chars`` characters, logging how many were cut.

    Args:
        texts: the texts.
        max_chars: the cap.
        reads: what the model reads of a text, for the log line (e.g. "its first 512 tokens").
    """
    cut = sum(len(t) > max_chars for t in texts)
    if not cut:
        return list(texts)
    log.warning(
        "%d of %d texts were longer than %d characters and were cut to that length before tokenising "
        "(the model reads %s); to read more, raise --max-chars (max_chars= in domainfit.load)",
        cut,
        len(texts),
        max_chars,
        reads,
    )
    return [t[:max_chars] for t in texts]
