"""Cutting text into words, for English and Chinese: the one place that decides what a word is.

English words are whitespace runs (augmentation) or letter/digit runs (vocabulary diagnostics); Chinese has no
spaces, so its words come from jieba. Whole-word masking, augmentation and ``domainfit inspect`` all cut words
here, so a Chinese text is cut the same way everywhere:

    splitter = WordSplitter("auto", terms=["心肌梗死"])   # jieba for texts holding CJK, whitespace otherwise
    splitter.split("患者因心肌梗死入院")                    # ['患者', '因', '心肌梗死', '入院']

jieba's dictionary is loaded once per process (seconds), without jieba's log lines, and its cache is kept in
domainfit's cache folder (``$DOMAINFIT_CACHE_DIR``, else ``~/.cache/domainfit``) rather than a shared /tmp.
A segmenter with domain terms is a copy of that dictionary, so the user's global ``jieba`` stays untouched.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from domainfit.errors import MissingExtraError
from domainfit.io.cache import cache_dir

log = logging.getLogger(__name__)

# CJK Unified Ideographs, Extension A and the compatibility block: the characters jieba segments
CJK_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# a run of letters/digits, with inner apostrophes or hyphens ("don't", "COVID-19")
_LETTER_RUN = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")
# above CRITICAL: jieba logs only progress (debug) and a failed cache write, nothing the user must act on
_JIEBA_SILENT = logging.CRITICAL + 10


def has_cjk(text: str) -> bool:
    """True if ``text`` holds a CJK ideograph."""
    return CJK_IDEOGRAPH.search(text) is not None


def cjk_share(texts: Sequence[str]) -> float:
    """Share of the non-space characters of ``texts`` that are CJK ideographs (0.0 for no characters)."""
    chars = sum(len(t) - sum(c.isspace() for c in t) for t in texts)
    return sum(len(CJK_IDEOGRAPH.findall(t)) for t in texts) / chars if chars else 0.0


def is_chinese(text: str, language: str) -> bool:
    """Whether ``text`` is cut with jieba under ``language``: "zh", "en", or "auto" (when it holds CJK)."""
    return language == "zh" or (language == "auto" and has_cjk(text))


def jieba_available() -> bool:
    """True if jieba can be imported."""
    try:
        import jieba  # noqa: F401
    except ImportError:
        return False
    return True


def _import_jieba() -> Any:
    try:
        import jieba
    except ImportError as e:
        raise MissingExtraError(
            "cutting Chinese text into words needs jieba, which is not installed", fix="pip install jieba"
        ) from e
    return jieba


def _jieba_cache_folder() -> Path | None:
    """The first folder jieba may write its dictionary cache to, or None if none is writable."""
    for folder in (cache_dir() / "jieba", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


@functools.lru_cache(maxsize=1)
def _default_segmenter() -> Any:
    """jieba with its default dictionary, loaded once per process."""
    jieba = _import_jieba()
    jieba.setLogLevel(_JIEBA_SILENT)
    segmenter = jieba.Tokenizer()  # a private instance: jieba's global tokenizer is the user's
    folder = _jieba_cache_folder()
    if folder is None:
        log.warning(
            "no writable folder for jieba's dictionary cache (tried %s and %s): the dictionary is "
            "built afresh in every run (a few seconds); set DOMAINFIT_CACHE_DIR to a writable folder",
            cache_dir() / "jieba",
            tempfile.gettempdir(),
        )
    else:
        segmenter.tmp_dir = str(folder)
    segmenter.initialize()
    return segmenter


def jieba_segmenter(terms: Iterable[str] = (), *, term_freq: int | None = None) -> Any:
    """A jieba tokenizer that knows ``terms`` as words (the default one, shared, when there are none).

    Args:
        terms: domain words to add to jieba's dictionary. They are added in sorted order, because each
            added word changes the frequency jieba suggests for the next: the result is the same in every
            process, whatever order the terms came in.
        term_freq: the frequency each term gets; None lets jieba suggest the lowest one that keeps the term
            whole when it stands alone, a large value (e.g. 10**6) makes it win in every context.

    Returns:
        A ``jieba.Tokenizer`` (``cut``/``lcut``). Do not add words to it: the one without terms is shared.

    Raises:
        MissingExtraError: jieba is not installed.
    """
    base = _default_segmenter()
    terms = sorted({t for t in terms if t})
    if not terms:
        return base
    segmenter = _import_jieba().Tokenizer()
    # a copy of the loaded dictionary, not a reload (seconds); prefixes of added words join the copy only
    segmenter.FREQ, segmenter.total, segmenter.initialized = dict(base.FREQ), base.total, True
    segmenter.tmp_dir = base.tmp_dir
    for term in terms:
        segmenter.add_word(term, freq=term_freq)
    return segmenter


class WordSplitter:
    """Cuts texts into words and joins them back: whitespace for English, jieba for Chinese.

    jieba is loaded on the first Chinese text, so English-only data never pays for it.

    Args:
        language: "en", "zh", or "auto" (jieba for texts holding CJK characters).
        terms: domain words jieba must know (see :func:`jieba_segmenter`).
        term_freq: the jieba frequency of each term (None: jieba's suggestion).
    """

    def __init__(self, language: str = "auto", terms: Iterable[str] = (), *, term_freq: int | None = None) -> None:
        self.language = language
        self.terms = tuple(terms)
        self.term_freq = term_freq
        self._segmenter: Any = None

    def is_chinese(self, text: str) -> bool:
        """Whether ``text`` is cut with jieba."""
        return is_chinese(text, self.language)

    def split(self, text: str) -> list[str]:
        """Words of ``text``: whitespace-separated for English; for Chinese, jieba's words, which cover the
        text exactly (whitespace too), so ``"".join`` restores it."""
        if not self.is_chinese(text):
            return text.split()
        return [w for w in self.segmenter().lcut(text) if w]

    def join(self, words: Sequence[str], chinese: bool) -> str:
        """The inverse of :meth:`split`: Chinese words joined as they are, English words by single spaces."""
        return "".join(words) if chinese else " ".join(words)

    def segmenter(self) -> Any:
        """The jieba tokenizer of this splitter (built on first use)."""
        if self._segmenter is None:
            self._segmenter = jieba_segmenter(self.terms, term_freq=self.term_freq)
        return self._segmenter


def letter_words(text: str, *, chinese: bool) -> list[str]:
    """The words of a text that hold at least one letter, for counting (numbers and punctuation are left out).

    Chinese text is cut by jieba (into characters if jieba is missing) and the non-Chinese pieces into
    letter/digit runs; other text into letter/digit runs only.
    """
    if chinese:
        pieces = jieba_segmenter().lcut(text) if jieba_available() else list(text)
        words = []
        for piece in pieces:
            words += _LETTER_RUN.findall(piece) if not has_cjk(piece) else [piece.strip()]
    else:
        words = _LETTER_RUN.findall(text)
    return [w for w in words if any(c.isalpha() for c in w)]
