"""Per-entity explanations for token classifiers: which words made the model tag this span as this entity.

    explainer = EntityExplainer(model, tokenizer, ["O", "B-Disease", "I-Disease"], max_length=128,
                                find_entities=ner.predict)
    explainer.explain(["Germline mutations in BRCA1 cause breast cancer ."], method="ig")
    # [{'text': ..., 'method': 'ig', 'unit': 'words', 'truncated': False,
    #   'explanations': [{'label': 'Disease', 'probability': 0.98, 'convergence_delta': 0.001,
    #                     'entity': {'text': 'breast cancer', 'start': 34, 'end': 47},
    #                     'words': [{'word': 'Germline', 'start': 0, 'end': 8, 'score': 0.002}, ...]}]}]

The entities are the predictor's own (``find_entities``: windows merged, strict IOB2 decoding), so what is
explained is what the user was shown. For each entity the attributed quantity is the entity's score as the
predictor reports it: the mean, over the span's units (words, or tokens for ``label_unit: tokens``), of the
probability of the unit's predicted tag (B-<label> on the first unit, I-<label> on the others). A word's
score is then in probability points and, for Integrated Gradients (Sundararajan et al. 2017), the scores of
a text's words add up to score(x) - score(baseline) up to ``convergence_delta``, the baseline being every
content token set to padding (special tokens kept). ``grad-x-input`` is gradient x input embedding
(Shrikumar et al. 2016). Both run through Captum on the input word embeddings, as for text classifiers
(:mod:`domainfit.evaluation.explain`), and tokens are grouped into words the same way (tokenizer words;
jieba words for text holding Chinese).

The model reads one window of ``max_length`` tokens per entity, centred on it; a text longer than that is
marked ``truncated`` and the words outside the window get no score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from domainfit.data.token_alignment import encode_sentence, special_tokens
from domainfit.data.words import WordSplitter
from domainfit.errors import DomainfitError, ModelError
from domainfit.evaluation.explain import DEFAULT_STEPS, METHODS, check_method, import_captum, word_units

# interpolated copies of a window that go through the model at once (as for text classifiers)
_INTERNAL_BATCH = 16

# find_entities(texts) -> per text, [{"start", "end", "label", "text", "score"}] (TokenPredictor.predict)
EntityFinder = Callable[[list[str]], list[list[dict[str, Any]]]]


def entity_window(first: int, last: int, n_tokens: int, size: int) -> tuple[int, int]:
    """The ``[start, end)`` token window of at most ``size`` tokens centred on tokens ``first..last``.

    Args:
        first: the entity's first token.
        last: the entity's last token (inclusive).
        n_tokens: content tokens of the text.
        size: content tokens the model reads at once.
    """
    if n_tokens <= size:
        return 0, n_tokens
    start = (first + last + 1) // 2 - size // 2
    start = min(max(start, 0), n_tokens - size, first)  # an entity longer than the window keeps its start
    return start, start + size


class EntityExplainer:
    """Attributions of each predicted entity of a token classifier to the words of its text.

    Args:
        model: a PyTorch token-classification model (``.logits`` of shape (batch, seq, num_labels)), fp32.
        tokenizer: its fast Hugging Face tokenizer.
        labels: IOB2 tag names in output order.
        max_length: tokens per window (special tokens included).
        find_entities: the predictor's entity finder, e.g. ``TokenPredictor.predict``.
        label_unit: "words" or "tokens": the unit the model was trained to tag.
        language: "auto" (jieba for texts holding CJK), "en" or "zh".
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        max_length: int,
        find_entities: EntityFinder,
        label_unit: str = "words",
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
        self.find_entities = find_entities
        self.label_unit = label_unit
        self.splitter = WordSplitter(language)
        self._before, self._after = special_tokens(tokenizer)
        self._takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _entity_score(
        self, input_ids: Any, attention_mask: Any, token_type_ids: Any, positions: Any, tag_ids: Any
    ) -> Any:
        """(batch,) mean probability of the entity's predicted tags; Captum calls this with its batches."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_types:
            feed["token_type_ids"] = token_type_ids
        probs = self.model(**feed).logits.float().softmax(-1)  # (batch, seq, num_labels)
        return probs[:, positions, tag_ids].mean(-1)  # (batch,)

    def explain(
        self,
        texts: Sequence[str],
        *,
        method: str = "ig",
        n_steps: int = DEFAULT_STEPS,
    ) -> list[dict[str, Any]]:
        """Explain every entity the predictor finds in each text with word scores.

        Args:
            texts: the texts (an empty one has no entity).
            method: "ig" (Integrated Gradients) or "grad-x-input".
            n_steps: IG's integration steps.

        Returns:
            One dict per text: ``text``, ``method``, ``unit``, ``truncated`` and ``explanations``: per entity
            ``label``, ``probability`` (the entity's score), ``convergence_delta`` (IG only, else None),
            ``entity`` (``{"text", "start", "end"}``, offsets into the text) and ``words`` (``{"word",
            "start", "end", "score"}`` in text order).
        """
        check_method(method, METHODS)
        if isinstance(texts, str):
            raise DomainfitError("expected a list of texts, got one string", fix="wrap it in a list: explain([text]).")
        texts = list(texts)
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise DomainfitError(f"n_steps must be a positive integer, got {n_steps!r}")
        entities = self.find_entities(texts)  # checks the texts
        captum_attr = import_captum()
        layer = self.model.get_input_embeddings()
        if method == "ig":
            attributor = captum_attr.LayerIntegratedGradients(self._entity_score, layer)
        else:
            attributor = captum_attr.LayerGradientXActivation(self._entity_score, layer)
        return [self._explain_text(text, spans, method, attributor, n_steps) for text, spans in zip(texts, entities)]

    def _explain_text(
        self, text: str, spans: list[dict[str, Any]], method: str, attributor: Any, n_steps: int
    ) -> dict[str, Any]:
        import torch

        result: dict[str, Any] = {
            "text": text,
            "method": method,
            "unit": "words",
            "truncated": False,
            "explanations": [],
        }
        if not spans:
            return result
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets, word_ids = enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]], enc.word_ids()
        units = encode_sentence(self.tokenizer, text, unit=self.label_unit)  # the predictor's units
        size = self.max_length - len(self._before) - len(self._after)
        result["truncated"] = len(ids) > size
        for span in spans:
            inside = [i for i, (s, e) in enumerate(units.word_spans) if s >= span["start"] and e <= span["end"]]
            tag_names = [f"B-{span['label']}"] + [f"I-{span['label']}"] * (len(inside) - 1)
            if not inside or any(tag not in self.labels for tag in tag_names):
                continue  # not decodable from this model's tags: nothing honest to attribute
            tokens = [units.first_tokens[i] for i in inside]
            start, end = entity_window(tokens[0], tokens[-1], len(ids), size)
            window_ids = self._before + ids[start:end] + self._after
            n_before = len(self._before)
            # the window's tokens as word_units takes them: special tokens have no word and no offsets
            window_offsets = [(0, 0)] * n_before + offsets[start:end] + [(0, 0)] * len(self._after)
            window_words = [None] * n_before + word_ids[start:end] + [None] * len(self._after)
            words = word_units(text, window_offsets, window_words, prefix_chars=0, splitter=self.splitter)
            result["unit"] = words.unit
            input_ids = torch.tensor([window_ids])  # (1, seq)
            mask = torch.ones_like(input_ids)
            types = torch.zeros_like(input_ids)
            # lists, not tensors: Captum repeats tensor arguments along the batch for its interpolation steps
            positions = [n_before + t - start for t in tokens if start <= t < end]
            tag_ids = [self.labels.index(tag) for tag, t in zip(tag_names, tokens) if start <= t < end]
            extra = (mask, types, positions, tag_ids)
            with torch.no_grad():
                probability = float(self._entity_score(input_ids, *extra)[0])
            delta = None
            if method == "ig":
                content = torch.zeros(len(window_ids), dtype=torch.bool)
                content[n_before : n_before + end - start] = True
                baseline = torch.where(content, torch.tensor(self._pad_id), input_ids[0]).unsqueeze(0)
                attributions, delta = attributor.attribute(
                    input_ids,
                    baselines=baseline,
                    additional_forward_args=extra,
                    n_steps=n_steps,
                    internal_batch_size=_INTERNAL_BATCH,
                    return_convergence_delta=True,
                )
                delta = float(delta[0])
            else:
                attributions = attributor.attribute(input_ids, additional_forward_args=extra)
            token_scores = attributions[0].sum(-1).detach().float().numpy()  # (seq,)
            word_scores = np.zeros(len(words.spans), dtype=np.float64)
            for t, w in enumerate(words.token_word):
                if w >= 0:
                    word_scores[w] += token_scores[t]
            result["explanations"].append(
                {
                    "label": span["label"],
                    "probability": probability,
                    "convergence_delta": delta,
                    "entity": {"text": text[span["start"] : span["end"]], "start": span["start"], "end": span["end"]},
                    "words": [
                        {"word": text[s:e], "start": s, "end": e, "score": float(score)}
                        for (s, e), score in zip(words.spans, word_scores)
                    ],
                }
            )
        return result
