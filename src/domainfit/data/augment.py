"""On-the-fly text augmentation of training batches, for English and Chinese: EDA ops and masked-LM refills.

    # config
    augment: {ops: [swap, delete, insert, synonym, mlm], rate: 0.3, alpha: 0.1,
              lexicon: synonyms.txt, mlm_model: path/or/hub-id}
    domainfit train my.yaml augment.ops=[swap,delete] augment.rate=0.3

Each time a training text is drawn it is augmented with probability ``rate``: one op, picked at random
from ``ops``, changes ``max(1, round(alpha * words))`` of its words. The token-level ops follow EDA
(Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks"): random swap, random deletion, random insertion and synonym replacement, with
synonyms from a user lexicon instead of WordNet. The ``mlm`` op is contextual substitution (Kobayashi 2018;
Wu et al. 2019, "Conditional BERT contextual augmentation"): mask words, refill each with one of a masked
LM's top-k predictions. "Words" are whitespace words for English and jieba words for Chinese (lexicon
entries are added to jieba's dictionary so a term like 心肌梗死 is never cut).

Randomness is a pure function of (seed, example id, how many times that example was drawn): a run is
reproducible, and an example gets a fresh augmentation each epoch. Only the task's training collate calls
this module; validation, test and prediction never see augmented text.
"""

from __future__ import annotations

import logging
import random
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from domainfit.data.words import WordSplitter, has_cjk
from domainfit.errors import DataError
from domainfit.registry import Registry

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# Lexicon and word splitting


@dataclass(frozen=True)
class Lexicon:
    """Synonym groups from a user file: each word maps to the other members of its group(s).

    Attributes:
        synonyms: lower-cased word -> its synonyms (as written in the file).
        path: where it was read from.
    """

    synonyms: dict[str, tuple[str, ...]]
    path: str = ""

    def lookup(self, word: str) -> tuple[str, ...]:
        """Synonyms of ``word`` (case-insensitive), empty if none."""
        return self.synonyms.get(word.lower(), ())


def read_lexicon(path: str | Path) -> Lexicon:
    """Read a synonym file: one group per line, members separated by whitespace; ``#`` starts a comment.

    A word in several groups gets the members of all of them.

    Raises:
        DataError: the file is missing or not UTF-8, or a line holds a single word.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError("lexicon file not found", path=path, fix="check augment.lexicon.") from e
    except UnicodeDecodeError as e:
        raise DataError("lexicon file is not UTF-8 text", path=path, fix="save it as UTF-8.") from e
    groups: dict[str, dict[str, None]] = defaultdict(dict)  # dicts as ordered sets: deterministic order
    for number, line in enumerate(text.splitlines(), start=1):
        members = line.split("#", 1)[0].split()
        if not members:
            continue
        if len(members) < 2:
            raise DataError(
                f"a synonym group needs at least two words, found {members[0]!r} alone",
                path=path,
                line=number,
                fix="write the group's words on one line, separated by spaces, e.g. '心肌梗死 心梗 MI'.",
            )
        for word in members:
            for other in members:
                if other.lower() != word.lower():
                    groups[word.lower()][other] = None
    if not groups:
        raise DataError(
            "lexicon file holds no synonym groups",
            path=path,
            fix="write one group per line, words separated by spaces.",
        )
    return Lexicon({word: tuple(others) for word, others in groups.items()}, path=str(path))


def create_splitter(language: str, lexicon: Lexicon | None) -> WordSplitter:
    """The splitter augmentation cuts words with: the lexicon's Chinese words are kept whole by jieba."""
    words = {w for others in lexicon.synonyms.values() for w in others} if lexicon is not None else set()
    return WordSplitter(language, [w for w in words if has_cjk(w)])


def content_positions(words: Sequence[str]) -> list[int]:
    """Indices of the words an op may touch: not whitespace, not punctuation alone (EDA leaves it out too)."""
    return [
        i
        for i, w in enumerate(words)
        if w.strip() and not all(unicodedata.category(c).startswith(("P", "Z")) for c in w)
    ]


# ----------------------------------------------------------------------------------------------------------
# Ops: each changes ``n`` words of every sentence in a batch


class AugmentOp(Protocol):
    """One augmentation operation over a batch of word lists (batched for the masked-LM op's sake)."""

    def apply(self, sentences: list[list[str]], n_changes: list[int], rngs: list[random.Random]) -> list[list[str]]:
        """Return new word lists; ``n_changes[i]`` words of sentence ``i`` change, drawn with ``rngs[i]``."""


@dataclass(frozen=True)
class OpContext:
    """What an op may need when it is built (only the ones that need it look)."""

    lexicon: Lexicon | None
    mlm_model: str | None
    mlm_top_k: int
    splitter: WordSplitter


AUGMENTERS: Registry[Callable[[OpContext], AugmentOp]] = Registry("augmentation op")


class _PerSentenceOp:
    def apply(self, sentences: list[list[str]], n_changes: list[int], rngs: list[random.Random]) -> list[list[str]]:
        return [self.one(list(words), n, rng) for words, n, rng in zip(sentences, n_changes, rngs)]

    def one(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        raise NotImplementedError


@AUGMENTERS.register("swap")
class RandomSwap(_PerSentenceOp):
    """Swap two random words, ``n`` times (EDA's RS)."""

    def __init__(self, ctx: OpContext | None = None) -> None:
        pass

    def one(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        positions = content_positions(words)
        if len(positions) < 2:
            return words
        for _ in range(n):
            i, j = rng.sample(positions, 2)
            words[i], words[j] = words[j], words[i]
        return words


@AUGMENTERS.register("delete")
class RandomDeletion(_PerSentenceOp):
    """Delete ``n`` random words, always keeping at least one (EDA's RD, with a fixed count)."""

    def __init__(self, ctx: OpContext | None = None) -> None:
        pass

    def one(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        positions = content_positions(words)
        drop = set(rng.sample(positions, min(n, len(positions) - 1))) if len(positions) > 1 else set()
        return [w for i, w in enumerate(words) if i not in drop]


@AUGMENTERS.register("insert")
class RandomInsertion(_PerSentenceOp):
    """Insert ``n`` words at random positions (EDA's RI): a synonym of a random word of the sentence, taken
    from the lexicon; without a lexicon, or when no word has one, a copy of a random word of the sentence."""

    def __init__(self, ctx: OpContext | None = None) -> None:
        self.lexicon = ctx.lexicon if ctx else None

    def one(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        positions = content_positions(words)
        if not positions:
            return words
        original = [words[i] for i in positions]  # drawn from the sentence as it was, not as it grows
        with_synonyms = [w for w in original if self.lexicon and self.lexicon.lookup(w)]
        for _ in range(n):
            if with_synonyms:
                new = rng.choice(self.lexicon.lookup(rng.choice(with_synonyms)))
            else:
                new = rng.choice(original)
            words.insert(rng.randint(0, len(words)), new)
        return words


@AUGMENTERS.register("synonym")
class SynonymReplacement(_PerSentenceOp):
    """Replace up to ``n`` words that have lexicon synonyms with one of them (EDA's SR, user lexicon)."""

    def __init__(self, ctx: OpContext) -> None:
        if ctx.lexicon is None:
            raise DataError("the synonym op needs a lexicon", fix="set augment.lexicon: path/to/synonyms.txt")
        self.lexicon = ctx.lexicon

    def one(self, words: list[str], n: int, rng: random.Random) -> list[str]:
        candidates = [i for i in content_positions(words) if self.lexicon.lookup(words[i])]
        for i in rng.sample(candidates, min(n, len(candidates))):
            words[i] = rng.choice(self.lexicon.lookup(words[i]))
        return words


class Augmenter:
    """Augments training texts on the fly; deterministic in (seed, example id, times drawn).

    Args:
        ops: op name -> built op, in the configured order.
        rate: probability that a drawn text is augmented.
        alpha: share of a text's words one op changes (at least one).
        seed: base seed.
        splitter: cuts texts into words and back.
    """

    def __init__(
        self, ops: dict[str, AugmentOp], *, rate: float, alpha: float, seed: int, splitter: WordSplitter
    ) -> None:
        self.ops = ops
        self.rate = rate
        self.alpha = alpha
        self.seed = seed
        self.splitter = splitter
        self._draws: dict[Any, int] = defaultdict(int)

    def augment(self, texts: Sequence[str], keys: Sequence[Any]) -> list[str | None]:
        """Augmented text per input, or None where the text is left as it is (not drawn, or no change).

        Args:
            texts: the training texts of one batch.
            keys: a stable id per text (its index in the training split); with the number of times the
                key was seen it seeds the text's random choices.
        """
        plans = []
        for text, key in zip(texts, keys):
            rng = random.Random(f"{self.seed}:{key}:{self._draws[key]}")
            self._draws[key] += 1
            op = rng.choice(list(self.ops)) if rng.random() < self.rate else None
            plans.append((op, rng))
        return self._run(texts, plans)

    def preview(self, texts: Sequence[str], n: int, tries: int = 10) -> list[tuple[str, str, str | None]]:
        """``n`` samples (op, original, augmented or None), every op in turn, always applied.

        Texts are taken in order; an op that finds nothing to change in a text (synonym replacement in a
        text without lexicon words) moves on to the next text, up to ``tries`` times. Uses its own random
        stream, so training draws are the same with or without a preview.
        """
        names, samples, cursor = list(self.ops), [], 0
        for i in range(min(n, len(texts))):
            op = names[i % len(names)]
            for attempt in range(tries):
                text = texts[cursor % len(texts)]
                cursor += 1
                new = self._run([text], [(op, random.Random(f"{self.seed}:preview:{i}:{attempt}"))])[0]
                if new is not None:
                    break
            samples.append((op, text, new))
        return samples

    def _run(self, texts: Sequence[str], plans: list[tuple[str | None, random.Random]]) -> list[str | None]:
        outputs: list[str | None] = [None] * len(texts)
        by_op: dict[str, list[int]] = defaultdict(list)
        for i, (op, _) in enumerate(plans):
            if op is not None:
                by_op[op].append(i)
        for op, rows in by_op.items():
            chinese = [self.splitter.is_chinese(texts[i]) for i in rows]
            words = [self.splitter.split(texts[i]) for i in rows]
            counts = [max(1, round(self.alpha * len(content_positions(w)))) for w in words]
            new_words = self.ops[op].apply(words, counts, [plans[i][1] for i in rows])
            for i, zh, old, new in zip(rows, chinese, words, new_words):
                if new != old:
                    outputs[i] = self.splitter.join(new, zh)
        return outputs


def create_augmenter(cfg: Any, seed: int) -> Augmenter:
    """Build the augmenter of an ``AugmentConfig``: read the lexicon, build each op (loads the masked LM once).

    Args:
        cfg: the run's ``augment`` section.
        seed: the run's seed.
    """
    lexicon = read_lexicon(cfg.lexicon) if cfg.lexicon else None
    splitter = create_splitter(cfg.language, lexicon)
    ctx = OpContext(lexicon=lexicon, mlm_model=cfg.mlm_model, mlm_top_k=cfg.mlm_top_k, splitter=splitter)
    ops = {name: AUGMENTERS.get(name, key="augment.ops")(ctx) for name in dict.fromkeys(cfg.ops)}
    return Augmenter(ops, rate=cfg.rate, alpha=cfg.alpha, seed=seed, splitter=splitter)


def format_samples(samples: list[tuple[str, str, str | None]]) -> str:
    """The augment_samples.txt text: one block per sample."""
    blocks = []
    for op, original, new in samples:
        shown = new if new is not None else "(unchanged: nothing to change)"
        blocks.append(f"[{op}]\n  original:  {original}\n  augmented: {shown}")
    return "\n".join(blocks) + "\n"
