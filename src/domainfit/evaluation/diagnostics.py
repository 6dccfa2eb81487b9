"""Domain-shift diagnostics: how well a model's vocabulary (and masked-LM head) fits a corpus, in plain words.

    domainfit inspect corpus.txt --model minilm --sample 500
    domainfit inspect --config CONFIG            # the training texts of a run, with its model.name

Measured on a random sample of the corpus:

- **[UNK] rate**: share of the corpus's tokens the tokenizer maps to its unknown token.
- **fertility**: subword tokens per word (Rust et al. 2021, "How Good is Your Tokenizer?"); for Chinese, tokens
  per character too, with words from jieba.
- **3+ piece words**: share of word occurrences split into three or more pieces (SciBERT/PubMedBERT motivate
  their own vocabularies by exactly this fragmentation of domain terms).
- **vocabulary overlap**: share of the corpus's most frequent words that are one token, and the most frequent
  words that are split (with how).
- **pseudo-perplexity** of the masked-LM head (Salazar et al. 2020), only if the model folder has MLM-head weights;
  otherwise it says so instead of printing a number from a randomly initialised head.

Tokens are the pieces that hold text: SentencePiece's bare word-boundary marker ``▁`` (XLM-R and
multilingual-e5 put it before every word, so before every Chinese word tokenized on its own) is not counted,
or every Chinese word would look split into one piece more than it is.

The readings (:func:`readings`) turn these into advice at the thresholds below, each with its reason.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domainfit.data.token_alignment import is_boundary_marker
from domainfit.data.words import cjk_share, jieba_available, letter_words
from domainfit.io.atomic import write_text_atomic

# ---------------------------------------------------------------------------------------------------------------
# Thresholds of the readings, and why.
#
# [UNK]: a vocabulary built for the corpus's language leaves well under 0.5% of tokens unknown (the packaged
# MiniLM on Financial PhraseBank: 0.00%; see docs/diagnostics.md). At 5% one token in twenty carries no
# information and whole words vanish; the English MiniLM on Chinese text is far above that (~50%). Pretraining
# cannot fix it: the embedding matrix has no row for the missing characters.
UNK_RATE_HIGH = 0.05
UNK_RATE_SOME = 0.005
# 3+ pieces: on text of the domain the vocabulary was built from (general English), only a few percent of word
# occurrences are cut into 3+ pieces; financial news with its company names sits at the edge (PhraseBank with
# MiniLM: ~5%); biomedical text, the case that led to SciBERT's and PubMedBERT's in-domain vocabularies, is about
# twice that (NCBI-disease abstracts with MiniLM: ~11%, see
# docs/diagnostics.md). Words the model sees as fragments are where domain-adaptive pretraining helps most
# (Gururangan et al. 2020 report the largest DAPT gains on the domains least similar to the pretraining vocabulary).
SPLIT3_HIGH = 0.10
SPLIT3_MODERATE = 0.05
# Fertility: tokenizers on their own language give ~1.1-1.4 tokens per word (Rust et al. 2021); above 1.5 inputs
# grow long (truncation bites sooner) and words are poorly represented.
FERTILITY_HIGH = 1.5
# Vocabulary overlap: the frequent words of a matching corpus are almost all whole tokens (PhraseBank's 1,000 most
# frequent words with MiniLM: ~80%, NCBI-disease: ~69%); below 75% the model reads many everyday words of the
# domain as fragments.
OVERLAP_LOW = 0.75
# A corpus is treated as Chinese (words from jieba, tokens per character) when this share of its non-space
# characters are CJK ideographs.
CJK_SHARE_CHINESE = 0.3
TOP_WORDS = 1000


def tokenizer_metrics(
    texts: Sequence[str], tokenizer: Any, *, top_words: int = TOP_WORDS, n_split_examples: int = 15
) -> dict[str, Any]:
    """Vocabulary fit of ``tokenizer`` on ``texts``: [UNK] rate, fertility, 3+ piece share, overlap, split words.

    Whole texts are tokenized for the [UNK] rate and tokens per character; each distinct word is tokenized once,
    on its own, for fertility and splits (the same pieces a WordPiece tokenizer gives it in context). Bare
    SentencePiece word-boundary markers are left out of every count.
    """
    chinese = cjk_share(texts) >= CJK_SHARE_CHINESE
    unk_id = tokenizer.unk_token_id
    unk = tokenizer.unk_token
    n_tokens = n_unk = n_chars = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = [i for i, p in zip(ids, tokenizer.convert_ids_to_tokens(ids)) if not is_boundary_marker(p)]
        n_tokens += len(ids)
        n_unk += sum(i == unk_id for i in ids) if unk_id is not None else 0
        n_chars += len(text) - sum(c.isspace() for c in text)
    # an uncased tokenizer sees "Profit" and "profit" alike: count them as one word
    lowercases = tokenizer.tokenize("ABC") == tokenizer.tokenize("abc")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w.lower() if lowercases else w for w in letter_words(text, chinese=chinese))
    pieces = {w: [p for p in tokenizer.tokenize(w) if not is_boundary_marker(p)] for w in counts}
    n_words = sum(counts.values())

    def share(predicate) -> float:
        return sum(n for w, n in counts.items() if predicate(pieces[w])) / n_words if n_words else 0.0

    def whole(p: list[str]) -> bool:
        return len(p) == 1 and p[0] != unk

    frequent = [w for w, _ in counts.most_common(top_words)]
    split = [w for w, _ in counts.most_common() if not whole(pieces[w])][:n_split_examples]
    unknown = [w for w, _ in counts.most_common() if unk in pieces[w]][:n_split_examples]
    return {
        "language": "chinese" if chinese else "space-separated",
        "texts": len(texts),
        "characters": n_chars,
        "tokens": n_tokens,
        "words": n_words,
        "distinct_words": len(counts),
        "unk_token": unk,
        "unk_rate": n_unk / n_tokens if n_tokens else 0.0,
        "tokens_per_word": sum(len(pieces[w]) * n for w, n in counts.items()) / n_words if n_words else 0.0,
        "tokens_per_character": n_tokens / n_chars if n_chars else 0.0,
        "share_words_split_3plus": share(lambda p: len(p) >= 3),
        "share_distinct_words_split_3plus": (sum(len(p) >= 3 for p in pieces.values()) / len(pieces))
        if pieces
        else 0.0,
        "share_words_with_unk": share(lambda p: unk in p),
        "top_words": len(frequent),
        "vocab_overlap_top_words": (sum(whole(pieces[w]) for w in frequent) / len(frequent)) if frequent else 0.0,
        "frequent_split_words": [{"word": w, "count": counts[w], "pieces": pieces[w]} for w in split],
        "frequent_unknown_words": [{"word": w, "count": counts[w], "pieces": pieces[w]} for w in unknown],
        "word_segmentation": (
            ("jieba" if jieba_available() else "characters (jieba not installed)") if chinese else "letter runs"
        ),
    }


def load_mlm(name: str) -> tuple[Any, list[str]]:
    """Load ``name`` as a masked LM; return (model, missing head keys). Missing keys mean the MLM head would be
    randomly initialised, so no perplexity from it means anything."""
    from transformers import AutoModelForMaskedLM

    from domainfit.models.loading import load_pretrained

    model, info = load_pretrained(AutoModelForMaskedLM.from_pretrained, name, output_loading_info=True)
    return model.eval(), sorted(info.get("missing_keys", []))


def pseudo_perplexity(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int = 64, batch_size: int = 64
) -> dict[str, Any]:
    """Masked-LM pseudo-perplexity (Salazar et al. 2020): mask each token in turn, score the true token,
    PPPL = exp(-mean log-probability). Texts are truncated to ``max_length`` tokens."""
    import torch

    total_logp, n_scored = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"][0]  # (seq,)
            special = set(tokenizer.all_special_ids)
            positions = [i for i, t in enumerate(ids.tolist()) if t not in special]
            for start in range(0, len(positions), batch_size):
                pos = torch.tensor(positions[start : start + batch_size])
                batch = ids.repeat(len(pos), 1)  # (n_masked, seq)
                batch[torch.arange(len(pos)), pos] = tokenizer.mask_token_id
                logits = model(input_ids=batch).logits  # (n_masked, seq, vocab)
                logp = logits[torch.arange(len(pos)), pos].float().log_softmax(-1)  # (n_masked, vocab)
                total_logp += logp[torch.arange(len(pos)), ids[pos]].sum().item()
                n_scored += len(pos)
    return {
        "pseudo_perplexity": math.exp(-total_logp / n_scored) if n_scored else None,
        "texts": len(texts),
        "tokens_scored": n_scored,
        "max_length": max_length,
    }


def mlm_metrics(name: str, tokenizer: Any, texts: Sequence[str], *, max_length: int = 64) -> dict[str, Any]:
    """Pseudo-perplexity when the model has MLM-head weights; otherwise which head weights are missing."""
    if tokenizer.mask_token_id is None:
        return {"available": False, "reason": "the tokenizer has no mask token (not a masked language model)"}
    model, missing = load_mlm(name)
    if missing:
        return {
            "available": False,
            "missing_keys": missing,
            "reason": f"the model folder has no masked-LM head weights ({len(missing)} missing, e.g. {missing[0]}); "
            "a perplexity from a randomly initialised head would mean nothing",
        }
    return {"available": True, **pseudo_perplexity(model, tokenizer, texts, max_length=max_length)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def readings(m: dict[str, Any]) -> list[str]:
    """Plain-language advice from the metrics, at the thresholds documented at the top of this module."""
    out = []
    tok, chinese = m["tokenizer"], m["tokenizer"]["language"] == "chinese"
    if tok["unk_rate"] >= UNK_RATE_HIGH:
        language = "Chinese text" if chinese else "your language or script"
        out.append(
            f"{_pct(tok['unk_rate'])} of tokens are {tok['unk_token']}: this model's vocabulary does not cover "
            f"{language}; use a multilingual model (e.g. multilingual-e5-small) - pretraining cannot add "
            "missing vocabulary."
        )
    elif tok["unk_rate"] >= UNK_RATE_SOME:
        words = ", ".join(w["word"] for w in tok["frequent_unknown_words"][:5])
        out.append(
            f"{_pct(tok['unk_rate'])} of tokens are {tok['unk_token']}: some characters are unknown to the "
            f"vocabulary (e.g. in: {words}); normalise them, or choose a model whose vocabulary has them."
        )
    split3 = tok["share_words_split_3plus"]
    if tok["unk_rate"] >= UNK_RATE_HIGH:
        out.append(
            f"(the 3+ piece share, {_pct(split3)}, and the vocabulary overlap are moot while so many tokens are "
            f"{tok['unk_token']}: pretraining this model will not help.)"
        )
    elif split3 >= SPLIT3_HIGH:
        out.append(
            f"this model splits {_pct(split3)} of your domain words into 3+ pieces: domain-adaptive "
            "pretraining (`domainfit pretrain` on in-domain text) is likely to help."
        )
    elif split3 >= SPLIT3_MODERATE:
        out.append(
            f"this model splits {_pct(split3)} of your domain words into 3+ pieces: moderate; pretraining on "
            "in-domain text may help somewhat."
        )
    else:
        out.append(
            f"only {_pct(split3)} of your words are split into 3+ pieces: the vocabulary fits this text; gains "
            "from pretraining would come from topic and style rather than vocabulary."
        )
    if not chinese and tok["tokens_per_word"] >= FERTILITY_HIGH:
        out.append(
            f"{tok['tokens_per_word']:.2f} tokens per word (a matching vocabulary gives ~1.1-1.4): inputs are "
            "long; check that model.max_length does not truncate them."
        )
    if tok["vocab_overlap_top_words"] < OVERLAP_LOW and tok["unk_rate"] < UNK_RATE_HIGH:
        out.append(
            f"only {_pct(tok['vocab_overlap_top_words'])} of your {tok['top_words']} most frequent words are "
            "single tokens in this vocabulary."
        )
    mlm = m["mlm"]
    if mlm.get("available"):
        out.append(
            f"masked-LM pseudo-perplexity {mlm['pseudo_perplexity']:.1f} on {mlm['texts']} texts: compare it "
            "before and after pretraining (lower means the model predicts your text better)."
        )
    elif "reason" in mlm:
        out.append(f"no perplexity: {mlm['reason']}.")
    return out


def inspect_corpus(
    texts: Sequence[str], model: str, *, mlm_sample: int = 50, mlm_max_length: int = 64
) -> dict[str, Any]:
    """All diagnostics of ``texts`` against ``model`` (a hub id, folder or built-in name), with readings."""
    from domainfit.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model)
    metrics: dict[str, Any] = {"model": model, "tokenizer": tokenizer_metrics(texts, tokenizer)}
    if mlm_sample > 0:
        metrics["mlm"] = mlm_metrics(model, tokenizer, list(texts)[:mlm_sample], max_length=mlm_max_length)
    else:
        metrics["mlm"] = {"available": False, "reason": "skipped (--mlm-sample 0)"}
    metrics["readings"] = readings(metrics)
    return metrics


def format_summary(m: dict[str, Any]) -> str:
    """The terminal summary (also the body of inspect.md)."""
    t = m["tokenizer"]
    rows = [
        ("texts (sample)", f"{t['texts']}"),
        ("language", f"{t['language']} (words: {t['word_segmentation']})"),
        ("words / distinct", f"{t['words']} / {t['distinct_words']}"),
        (f"{t['unk_token']} rate (of tokens)", _pct(t["unk_rate"])),
        ("tokens per word", f"{t['tokens_per_word']:.2f}"),
        ("tokens per character", f"{t['tokens_per_character']:.2f}"),
        (
            "words split into 3+ pieces",
            f"{_pct(t['share_words_split_3plus'])} of occurrences, "
            f"{_pct(t['share_distinct_words_split_3plus'])} of distinct words",
        ),
        (f"top-{t['top_words']} words that are one token", _pct(t["vocab_overlap_top_words"])),
        ("MLM pseudo-perplexity", f"{m['mlm']['pseudo_perplexity']:.1f}" if m["mlm"].get("available") else "n/a"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if t["frequent_split_words"]:
        lines.append("\nmost frequent words that are not one known token:")
        lines += [
            f"  {w['word']:<20} x{w['count']:<5} -> {' '.join(w['pieces'])}" for w in t["frequent_split_words"][:10]
        ]
    lines.append("\nreading:")
    lines += [f"- {r}" for r in m["readings"]]
    return "\n".join(lines)


def write_inspect_outputs(m: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write inspect.json and inspect.md into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "inspect.json", json.dumps(m, indent=1, ensure_ascii=False) + "\n")
    title = f"# Domain-shift diagnostics: {m['model']} on {m.get('corpus', 'the corpus')}\n\n"
    summary, _, _ = format_summary(m).partition("\nreading:")
    body = "## Reading\n\n" + "".join(f"- {r}\n" for r in m["readings"])
    write_text_atomic(out / "inspect.md", title + body + "\n## Figures\n\n```\n" + summary.strip() + "\n```\n")
    return out / "inspect.json", out / "inspect.md"
