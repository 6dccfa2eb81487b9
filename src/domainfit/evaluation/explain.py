"""Word attributions for text classifiers: which words pushed the model towards its label.

    explainer = TextExplainer(model, tokenizer, labels, max_length=128)
    explainer.explain(["Operating profit rose to EUR 13.1 mn ."], method="ig")
    # [{'text': ..., 'method': 'ig', 'unit': 'words', 'truncated': False,
    #   'explanations': [{'label': 'positive', 'probability': 0.97, 'convergence_delta': 0.002,
    #                     'words': [{'word': 'Operating', 'start': 0, 'end': 9, 'score': 0.01}, ...]}]}]

Two methods, both on the input word embeddings through Captum:

- ``ig``: Integrated Gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks") from a
  baseline where every token of the text is the padding token and the special tokens (and the model's text
  prefix) stay as they are. The scores of a text's words then add up to p(x) - p(baseline), to the
  integration error that ``convergence_delta`` reports (completeness).
- ``grad-x-input``: the gradient of the probability times the embedding (one backward pass; Shrikumar et al.
  2016), fast but without that guarantee.

What is attributed is the probability shown to the user (softmax for single-label, the label's sigmoid for
multi-label), so a word's score is in probability points, and it is the quantity the faithfulness measures of
:mod:`domainfit.evaluation.faithfulness` move. Token scores (summed over the embedding dimension) are added up
per word: English words are the tokenizer's word ids; text holding Chinese is cut into words by jieba
(:mod:`domainfit.data.words`), since one Chinese character is rarely a word.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainfit.data.words import WordSplitter
from domainfit.errors import DomainfitError, MissingExtraError, ModelError

METHODS = ("ig", "grad-x-input")
DEFAULT_STEPS = 50
# IG evaluates n_steps interpolated copies of a text; this many go through the model at once, which caps
# the activation memory of a 512-token text on a base-size model at a few hundred MB
_INTERNAL_BATCH = 16


def import_captum() -> Any:
    """``import captum.attr``, or a MissingExtraError that names the extra to install."""
    try:
        import captum.attr
    except ImportError as e:
        raise MissingExtraError(
            "explanations need captum, which is not installed", fix='pip install "domainfit[explain]"'
        ) from e
    return captum.attr


def check_method(method: str, methods: Sequence[str] = METHODS) -> str:
    """Return ``method`` if it is one of ``methods`` (default: the text methods), else a DomainfitError
    listing them."""
    if method not in methods:
        near = difflib.get_close_matches(str(method), methods, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise DomainfitError(f"unknown explanation method {method!r}.{hint}", fix=f"use one of: {', '.join(methods)}.")
    return method


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, after checking each is a non-empty string."""
    if isinstance(texts, str):
        raise DomainfitError("expected a list of texts, got one string", fix="wrap it in a list: explain([text]).")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DomainfitError(f"text {i} is a {type(text).__name__}, not a string: {text!r:.80}")
        if not text.strip():
            raise DomainfitError(
                f"text {i} is empty or only whitespace: nothing to explain", fix="drop empty texts before explaining."
            )
    return texts


@dataclass(frozen=True)
class WordUnits:
    """A text's words and which tokens belong to each.

    Attributes:
        spans: (start, end) character offsets of each word in the text (end exclusive).
        token_word: per token of the encoded input, the index of its word, or -1 (special or prefix token).
        unit: "words" (tokenizer word ids) or "jieba words".
    """

    spans: list[tuple[int, int]]
    token_word: list[int]
    unit: str


def word_units(
    text: str,
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    *,
    prefix_chars: int,
    splitter: WordSplitter,
) -> WordUnits:
    """Group the tokens of ``prefix + text`` into the words of ``text``.

    Args:
        text: the text, without the model's prefix.
        offsets: per token, (start, end) character offsets into ``prefix + text``; (0, 0) for special tokens.
        word_ids: per token, the tokenizer's word index (None for special tokens).
        prefix_chars: length of the prefix the model reads before the text (its tokens belong to no word).
        splitter: cuts text holding Chinese into jieba words.

    Returns:
        The words the model read, in text order (words cut off by truncation are left out).
    """
    token_word = [-1] * len(offsets)
    if splitter.is_chinese(text):
        # jieba's words cover the text exactly; a token belongs to the word holding its first non-space
        # character (a SentencePiece piece may start with the space before it)
        char_word = np.full(len(text), -1, dtype=np.int64)
        spans, position = [], 0
        for piece in splitter.split(text):
            if piece.strip():
                char_word[position : position + len(piece)] = len(spans)
                spans.append((position, position + len(piece)))
            position += len(piece)
        for t, (start, end) in enumerate(offsets):
            for c in range(max(start - prefix_chars, 0), max(end - prefix_chars, 0)):
                if char_word[c] >= 0:
                    token_word[t] = int(char_word[c])
                    break
        unit = "jieba words"
    else:
        spans, index = [], {}
        for t, (word_id, (start, end)) in enumerate(zip(word_ids, offsets)):
            if word_id is None or end <= prefix_chars or end <= start:
                continue
            start, end = max(start - prefix_chars, 0), end - prefix_chars
            if word_id not in index:
                index[word_id] = len(spans)
                spans.append((start, end))
            w = index[word_id]
            spans[w] = (min(spans[w][0], start), max(spans[w][1], end))
            token_word[t] = w
        unit = "words"
    # keep only the words some token was assigned to (truncation drops the tail), renumbered in order
    used = sorted(set(w for w in token_word if w >= 0))
    renumber = {w: i for i, w in enumerate(used)}
    return WordUnits([spans[w] for w in used], [renumber.get(w, -1) for w in token_word], unit)


class TextExplainer:
    """Attributions of a text classifier's probabilities to the words of its input.

    Args:
        model: a PyTorch sequence-classification model (``.logits`` of shape (batch, num_labels)), fp32.
        tokenizer: its fast Hugging Face tokenizer (offsets and word ids are needed).
        labels: label names in output order.
        max_length: tokens read per text (special tokens included); longer texts are truncated.
        text_prefix: prepended to every text, as in training (e.g. "query: " for e5).
        multi_label: True for a multi-label model (sigmoid per label), False for softmax.
        thresholds: multi-label only: (num_labels,) decision thresholds; the labels at or above theirs
            are explained (the most probable one if none is).
        language: "auto" (jieba for texts holding CJK), "en" or "zh".
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        max_length: int,
        text_prefix: str = "",
        multi_label: bool = False,
        thresholds: Sequence[float] | None = None,
        language: str = "auto",
    ) -> None:
        import inspect

        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(
                "explanations need a fast tokenizer (tokenizer.json) for word offsets",
                fix="save the model with its fast tokenizer (domainfit train does this).",
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.text_prefix = text_prefix
        self.multi_label = multi_label
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float32)
        self.splitter = WordSplitter(language)
        accepted = inspect.signature(model.forward).parameters
        self._takes_types = "token_type_ids" in accepted
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ------------------------------------------------------------------------------------------------------
    # the model as a function of token ids

    def _encode(self, text: str) -> Any:
        return self.tokenizer(
            self.text_prefix + text,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_tensors="pt",
        )

    def _probabilities(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
        """(batch, num_labels) probabilities; Captum calls this with its interpolation batches."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_types:
            feed["token_type_ids"] = token_type_ids
        logits = self.model(**feed).logits.float()  # (batch, num_labels)
        return logits.sigmoid() if self.multi_label else logits.softmax(-1)

    def probabilities(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities of ``texts`` (an empty text is allowed: the model reads only its special tokens).

        Returns:
            (len(texts), num_labels) float32, rows in input order.
        """
        import torch

        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = [self.text_prefix + t for t in texts[start : start + batch_size]]
            enc = self.tokenizer(batch, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            types = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
            with torch.inference_mode():
                out[start : start + len(batch)] = self._probabilities(
                    enc["input_ids"], enc["attention_mask"], types
                ).numpy()
        return out

    # ------------------------------------------------------------------------------------------------------
    # attributions

    def explain(
        self,
        texts: Sequence[str],
        *,
        method: str = "ig",
        n_steps: int = DEFAULT_STEPS,
    ) -> list[dict[str, Any]]:
        """Explain each text's predicted label(s) with word scores.

        Args:
            texts: the texts.
            method: "ig" (Integrated Gradients) or "grad-x-input".
            n_steps: IG's integration steps (more: smaller ``convergence_delta``, slower).

        Returns:
            One dict per text: ``text``, ``method``, ``unit``, ``truncated`` and ``explanations``: per
            explained label ``label``, ``probability``, ``convergence_delta`` (IG only, else None) and
            ``words``: ``{"word", "start", "end", "score"}`` in text order, offsets into ``text``.
        """
        check_method(method)
        texts = check_texts(texts)
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise DomainfitError(f"n_steps must be a positive integer, got {n_steps!r}")
        captum_attr = import_captum()
        layer = self.model.get_input_embeddings()
        if method == "ig":
            attributor = captum_attr.LayerIntegratedGradients(self._probabilities, layer)
        else:
            attributor = captum_attr.LayerGradientXActivation(self._probabilities, layer)
        return [self._explain_one(text, method, attributor, n_steps) for text in texts]

    def _targets(self, probs: np.ndarray) -> list[int]:
        if not self.multi_label:
            return [int(probs.argmax())]
        thresholds = self.thresholds if self.thresholds is not None else np.full(len(probs), 0.5, np.float32)
        chosen = sorted(np.flatnonzero(probs >= thresholds).tolist(), key=lambda i: -probs[i])
        return chosen or [int(probs.argmax())]

    def _explain_one(self, text: str, method: str, attributor: Any, n_steps: int) -> dict[str, Any]:
        import torch

        enc = self._encode(text)
        input_ids = enc["input_ids"]  # (1, seq)
        mask = enc["attention_mask"]
        types = enc.get("token_type_ids", torch.zeros_like(input_ids))
        units = word_units(
            text,
            [tuple(o) for o in enc["offset_mapping"][0].tolist()],
            enc.word_ids(0),
            prefix_chars=len(self.text_prefix),
            splitter=self.splitter,
        )
        in_words = torch.tensor([w >= 0 for w in units.token_word])
        with torch.no_grad():
            probs = self._probabilities(input_ids, mask, types)[0].numpy()
        explanations = []
        for target in self._targets(probs):
            delta = None
            if method == "ig":
                # baseline: the text's tokens -> padding; special and prefix tokens kept, so they get 0
                baseline = torch.where(in_words, torch.tensor(self._pad_id), input_ids[0]).unsqueeze(0)
                attributions, delta = attributor.attribute(
                    input_ids,
                    baselines=baseline,
                    additional_forward_args=(mask, types),
                    target=target,
                    n_steps=n_steps,
                    internal_batch_size=_INTERNAL_BATCH,
                    return_convergence_delta=True,
                )
                delta = float(delta[0])
            else:
                attributions = attributor.attribute(input_ids, additional_forward_args=(mask, types), target=target)
            token_scores = attributions[0].sum(-1).detach().float().numpy()  # (seq,)
            word_scores = np.zeros(len(units.spans), dtype=np.float64)
            for t, w in enumerate(units.token_word):
                if w >= 0:
                    word_scores[w] += token_scores[t]
            explanations.append(
                {
                    "label": self.labels[target],
                    "probability": float(probs[target]),
                    "convergence_delta": delta,
                    "words": [
                        {"word": text[s:e], "start": s, "end": e, "score": float(score)}
                        for (s, e), score in zip(units.spans, word_scores)
                    ],
                }
            )
        last_end = units.spans[-1][1] if units.spans else 0
        return {
            "text": text,
            "method": method,
            "unit": units.unit,
            "truncated": bool(text[last_end:].strip()),
            "explanations": explanations,
        }
