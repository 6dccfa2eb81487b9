"""Label-preserving text perturbations for invariance tests (CheckList's INV tests, Ribeiro et al. 2020).

    from domainfit.data.perturb import perturb_texts
    perturb_texts("typos", ["Operating profit rose to EUR 13.1 mn ."], seed=0)
    # ['Operaitng profit rose to EUR 13.1 mn .']

Each perturbation is a pure function ``(text, rng) -> text`` registered in :data:`PERTURBATIONS` under the
name the user types (``domainfit stress --perturbations typos,lowercase``). A reader would give the
perturbed text the same label as the original: typos, casing, punctuation, whitespace, number formats and,
for Chinese, simplified/traditional script, full-/half-width characters and homophone typos. A perturbation
returns the text unchanged when there is nothing for it to change (no Latin word for ``typos``); the stress
run counts only the texts that changed. Every text gets its own random generator, seeded from the run's seed,
the perturbation's name and the text's position, so results do not depend on which other perturbations ran.

Simplified <-> traditional conversion uses OpenCC (the ``trust`` extra); every other perturbation is built in.
The homophone table is a small hand-written one of the commonest confusions (的/地/得, 在/再, 做/作, ...), not
a pinyin dictionary.
"""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from domainfit.errors import MissingExtraError
from domainfit.registry import Registry

# Share of eligible words (typos) or characters (homophones, whitespace) changed. Low enough that a reader
# still reads the text without effort, high enough that a typical sentence gets at least one change.
DEFAULT_RATE = 0.15


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation.

    Attributes:
        apply: ``(text, rng) -> perturbed text``; pure, and returns ``text`` itself when nothing applies.
        about: one line for reports and ``--help``.
        script: the writing it is meant for: "latin", "cjk" (Chinese, Japanese) or "any"; a stress run on
            data of one script runs by default the perturbations for it and those for any.
        extra: the pip extra it needs (``None``: built in).
        module: the module that extra installs, to tell whether it is there.
    """

    apply: Callable[[str, random.Random], str]
    about: str
    script: str = "any"
    extra: str | None = None
    module: str | None = None

    def available(self) -> bool:
        """Whether the package it needs is installed (looked up, not imported)."""
        return self.module is None or importlib.util.find_spec(self.module) is not None


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")


def perturb_texts(name: str, texts: Sequence[str], *, seed: int = 0) -> list[str]:
    """Apply the perturbation registered as ``name`` to every text.

    Args:
        name: a name in :data:`PERTURBATIONS` (an unknown one raises a ConfigError listing them).
        texts: the original texts.
        seed: the run's seed; text ``i`` gets ``random.Random(f"{seed}:{name}:{i}")``.

    Returns:
        The perturbed texts, in order; a text the perturbation cannot change is returned as it was.
    """
    perturbation = PERTURBATIONS.get(name, key="--perturbations")
    # str seeds are hashed with SHA-512 by random.Random: the same on every machine and Python run
    return [perturbation.apply(text, random.Random(f"{seed}:{name}:{i}")) for i, text in enumerate(texts)]


def text_script(texts: Sequence[str]) -> str:
    """ "cjk" when at least half the texts hold a CJK ideograph, else "latin"."""
    cjk = sum(1 for text in texts if _CJK.search(text))
    return "cjk" if texts and cjk * 2 >= len(texts) else "latin"


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


# --- Latin-script text -----------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]{4,}")


def _typos(text: str, rng: random.Random) -> str:
    """Swap two neighbouring inner letters, or drop one, in a share of the words of 4+ letters.

    First and last letters stay, so the word stays readable ("Cmabrigde" effect); at least one word changes
    when the text has any such word.
    """
    words = list(_WORD.finditer(text))
    if not words:
        return text
    chosen = [m for m in words if rng.random() < DEFAULT_RATE] or [rng.choice(words)]
    pieces, last = [], 0
    for match in chosen:
        word = match.group()
        i = rng.randrange(1, len(word) - 2)  # an inner position with an inner neighbour on its right
        if rng.random() < 0.5 and word[i] != word[i + 1]:
            new = word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap
        else:
            new = word[:i] + word[i + 1 :]  # drop
        pieces += [text[last : match.start()], new]
        last = match.end()
    return "".join(pieces) + text[last:]


def _lowercase(text: str, rng: random.Random) -> str:  # noqa: ARG001
    return text.lower()


def _uppercase(text: str, rng: random.Random) -> str:  # noqa: ARG001
    return text.upper()


# punctuation that ends or separates clauses, ASCII and CJK; a '.' or ',' between digits is part of a number
_PUNCTUATION = re.compile(r"[.,](?!\d)|(?<!\d)[.,]|[!?;:\"()\[\]，。！？；：、“”‘’（）《》…]")


def _punctuation(text: str, rng: random.Random) -> str:  # noqa: ARG001
    """Remove punctuation marks, keeping the decimal points and thousands separators of numbers."""
    stripped = _PUNCTUATION.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip() if stripped != text else text


def _whitespace(text: str, rng: random.Random) -> str:
    """Widen a share of the spaces to two or three (in unspaced text such as Chinese: insert spaces between
    characters), at least one, and add trailing spaces."""
    if not text.strip():
        return text
    spaced = " " in text.strip()
    # where a space goes: an existing space (widened), or between two characters (inserted)
    gaps = [i for i, char in enumerate(text) if char == " "] if spaced else list(range(1, len(text)))
    chosen = {i for i in gaps if rng.random() < DEFAULT_RATE} or ({rng.choice(gaps)} if gaps else set())
    out = "".join((" " * rng.choice((1, 2)) if i in chosen else "") + char for i, char in enumerate(text))
    return out + "  "


# a number: digits with optional thousands separators and decimals, then an optional (spaced) percent sign
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s?%)?(?![\w])")


def _number_format(match: re.Match) -> str:
    whole, decimals, percent = match.group(1), match.group(2) or "", match.group(3) or ""
    if "," in whole:
        whole = whole.replace(",", "")  # 1,000 -> 1000
    elif len(whole) >= 5 or (len(whole) == 4 and not 1900 <= int(whole) <= 2100):  # 2007 stays a year
        whole = f"{int(whole):,}"  # 10000 -> 10,000
    if decimals and decimals.rstrip("0") != decimals:
        decimals = decimals.rstrip("0").rstrip(".")  # 5.0 -> 5, 5.50 -> 5.5
    if percent:
        percent = "%" if percent.startswith(" ") else " %"  # 5 % <-> 5%
    return whole + decimals + percent


def _numbers(text: str, rng: random.Random) -> str:  # noqa: ARG001
    """Rewrite numbers in another common format: thousands separators, trailing zeros, percent spacing."""
    return _NUMBER.sub(_number_format, text)


# --- Chinese text ------------------------------------------------------------------------------------


def _opencc(config: str) -> Any:
    try:
        import opencc
    except ImportError as e:
        raise MissingExtraError(
            "simplified/traditional Chinese conversion needs opencc, which is not installed",
            key="--perturbations",
            fix='pip install "domainfit[trust]", or leave out the perturbations zh-traditional and zh-simplified',
        ) from e
    return opencc.OpenCC(config)


def _to_traditional(text: str, rng: random.Random) -> str:  # noqa: ARG001
    return _opencc("s2t").convert(text)


def _to_simplified(text: str, rng: random.Random) -> str:  # noqa: ARG001
    return _opencc("t2s").convert(text)


# ASCII '!' .. '~' and U+FF01 .. U+FF5E are the same characters in half and full width, 0xFEE0 apart
_TO_FULL = {code: code + 0xFEE0 for code in range(0x21, 0x7F)} | {0x20: 0x3000}
_TO_HALF = {full: half for half, full in _TO_FULL.items()}


def _full_width(text: str, rng: random.Random) -> str:  # noqa: ARG001
    """ASCII letters, digits and punctuation in full width (ＡＢＣ１２３！), as East Asian IMEs type them."""
    return text.translate(_TO_FULL)


def _half_width(text: str, rng: random.Random) -> str:  # noqa: ARG001
    """Full-width forms (ＡＢＣ１２３，！) back to ASCII."""
    return text.translate(_TO_HALF)


# Characters commonly typed for one another because they sound alike (a pinyin IME offers both): the
# confusions Chinese spelling-error corpora (SIGHAN) list most, simplified and traditional forms both.
HOMOPHONES: dict[str, str] = {
    "的": "地",
    "地": "得",
    "得": "的",
    "在": "再",
    "再": "在",
    "做": "作",
    "作": "做",
    "已": "以",
    "以": "已",
    "象": "像",
    "像": "象",
    "带": "戴",
    "戴": "带",
    "坐": "座",
    "座": "坐",
    "那": "哪",
    "哪": "那",
    "他": "她",
    "她": "他",
    "里": "理",
    "理": "里",
    "和": "合",
    "合": "和",
    "到": "道",
    "道": "到",
    "又": "有",
    "有": "又",
    "进": "近",
    "近": "进",
    "议": "意",
    "意": "义",
    "义": "意",
    "即": "既",
    "既": "即",
    "须": "需",
    "需": "须",
    "帐": "账",
    "账": "帐",
    "副": "付",
    "付": "副",
    "式": "是",
    "是": "事",
    "事": "是",
    "心": "新",
    "新": "心",
    "形": "型",
    "型": "形",
    "原": "元",
    "元": "原",
    "常": "长",
    "长": "常",
    "价": "架",
    "服": "福",
    "福": "服",
    "務": "物",
    "裡": "理",
    "這": "者",
    "們": "門",
    "門": "們",
    "還": "環",
    "環": "還",
    "價": "架",
    "錯": "措",
    "错": "措",
    "措": "错",
    "员": "园",
    "园": "员",
}


def _homophones(text: str, rng: random.Random) -> str:
    """Replace a share of the characters that have a common homophone (at least one when any has)."""
    positions = [i for i, char in enumerate(text) if char in HOMOPHONES]
    if not positions:
        return text
    chosen = {i for i in positions if rng.random() < DEFAULT_RATE} or {rng.choice(positions)}
    return "".join(HOMOPHONES[c] if i in chosen else c for i, c in enumerate(text))


PERTURBATIONS.register(
    "typos", Perturbation(_typos, "swap or drop an inner letter in some words of 4+ letters", script="latin")
)
PERTURBATIONS.register("lowercase", Perturbation(_lowercase, "every letter in lower case", script="latin"))
PERTURBATIONS.register("uppercase", Perturbation(_uppercase, "every letter in upper case", script="latin"))
PERTURBATIONS.register("punctuation", Perturbation(_punctuation, "punctuation removed (numbers kept whole)"))
PERTURBATIONS.register("whitespace", Perturbation(_whitespace, "extra spaces between words, trailing spaces"))
PERTURBATIONS.register("numbers", Perturbation(_numbers, "number formats: 1,000 <-> 1000, 5.0 -> 5, 5% <-> 5 %"))
PERTURBATIONS.register(
    "zh-traditional",
    Perturbation(
        _to_traditional,
        "simplified Chinese -> traditional (OpenCC)",
        script="cjk",
        extra="trust",
        module="opencc",
    ),
)
PERTURBATIONS.register(
    "zh-simplified",
    Perturbation(
        _to_simplified,
        "traditional Chinese -> simplified (OpenCC)",
        script="cjk",
        extra="trust",
        module="opencc",
    ),
)
PERTURBATIONS.register(
    "full-width", Perturbation(_full_width, "ASCII letters, digits, punctuation -> full width", script="cjk")
)
PERTURBATIONS.register(
    "half-width", Perturbation(_half_width, "full-width letters, digits, punctuation -> ASCII", script="cjk")
)
PERTURBATIONS.register(
    "homophones", Perturbation(_homophones, "Chinese homophone typos (的/地/得, 在/再, ...)", script="cjk")
)
