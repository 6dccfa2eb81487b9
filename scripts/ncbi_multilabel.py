"""Derive a real multi-label text data set from the NCBI-disease corpus's gold disease mentions.

    python scripts/ncbi_multilabel.py ../shared/datasets/ner_ncbi_disease/NCBI-disease-IOB ~/data/ncbi_multilabel

Each sentence of the corpus (CoNLL IOB2, one ``token<TAB>tag`` a line) becomes one JSON Lines record
``{"text": ..., "label": [...]}`` whose labels are the disease-concept *head words* of its gold
``Disease`` mentions (the mention's last token, lower-cased, plural folded: "breast cancers" -> cancer,
"Duchenne muscular dystrophy" -> dystrophy, "C7 deficiency" -> deficiency), kept only for the ``--top``
head words most frequent in the training file. A sentence with no mention, or only mentions of other
heads, gets an empty label list: most sentences of an abstract carry no such code, as most of a note does.

The labels come from the corpus's human annotation (which spans are diseases); only the mapping from a
span to its head word is ours. Because the head word appears in the sentence, the task is partly lexical:
the model must tell a disease mention ("ovarian cancer") from other uses of the word ("cancer genetics
clinic", not annotated) and learn the co-occurrence of concepts. It exercises the multi-label pipeline on
real biomedical text, label imbalance and empty label sets; it is not a clinical-coding benchmark.

Writes train.jsonl, devel.jsonl, test.jsonl (the corpus's own split) and labels.json (head-word counts)
into OUT_DIR, which should be outside the repository (the corpus is CC BY 4.0; see its SOURCE.txt).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

SPLITS = ("train", "devel", "test")
# Plural head words folded to their singular (only endings seen in the corpus's frequent heads).
_IRREGULAR = {
    "neoplasms": "neoplasm",
    "tumours": "tumor",
    "tumour": "tumor",
    "carcinomas": "carcinoma",
    "deficiencies": "deficiency",
    "dystrophies": "dystrophy",
    "anomalies": "anomaly",
}


def read_iob(path: Path) -> list[tuple[list[str], list[list[str]]]]:
    """Sentences of a CoNLL IOB2 file as (tokens, mentions), each mention a list of tokens."""
    sentences, tokens, mentions = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            if tokens:
                sentences.append((tokens, mentions))
            tokens, mentions = [], []
            continue
        try:
            token, tag = line.split("\t")
        except ValueError as e:
            raise SystemExit(f"{path}:{number}: expected 'token<TAB>tag', found {line!r}") from e
        tokens.append(token)
        if tag.startswith("B-"):
            mentions.append([token])
        elif tag.startswith("I-") and mentions:
            mentions[-1].append(token)
    if tokens:
        sentences.append((tokens, mentions))
    return sentences


def head_word(mention: list[str]) -> str:
    """The mention's last alphabetic token, lower-cased and singular ("(APC) tumour" -> "tumor").

    A mention that ends in an abbreviation ("DMD", "APC", "WAS") has no concept head word: "" (an
    abbreviation names one disease, not a kind of disease, and lower-casing would turn "WAS" into "was").
    """
    words = [t for t in mention if any(c.isalpha() for c in t)]
    if not words or _is_abbreviation(words[-1]):
        return ""
    word = words[-1].lower()
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("ies") and len(word) > 5:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "sis", "us", "as")) and len(word) > 4:
        return word[:-1]
    return word


def _is_abbreviation(token: str) -> bool:
    """All capitals (or capitals and digits), e.g. DMD, HD, C7; a one-capital word like "Angelman" is not."""
    return sum(c.isupper() for c in token) >= 2 and not any(c.islower() for c in token) or token.isupper()


def detokenize(tokens: list[str]) -> str:
    """Join tokens with spaces (the corpus's tokenisation kept, as the NER files give it)."""
    return " ".join(tokens)


def convert(src: Path, out: Path, top: int) -> dict:
    """Write the three JSONL files and labels.json; return the summary written to labels.json."""
    corpus = {name: read_iob(src / f"{name}.tsv") for name in SPLITS}
    heads = Counter(head for _, mentions in corpus["train"] for head in {head_word(m) for m in mentions} - {""})
    labels = sorted(head for head, _ in heads.most_common(top))
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {
        "source": str(src),
        "top": top,
        "labels": labels,
        "train_sentence_counts": {h: heads[h] for h in labels},
        "splits": {},
    }
    for name, sentences in corpus.items():
        counts: Counter = Counter()
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for tokens, mentions in sentences:
                found = sorted({head_word(m) for m in mentions} & set(labels))
                counts.update(found)
                counts["(no label)"] += not found
                f.write(json.dumps({"text": detokenize(tokens), "label": found}, ensure_ascii=False) + "\n")
        summary["splits"][name] = {"sentences": len(sentences), **dict(counts.most_common())}
    (out / "labels.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path, help="the NCBI-disease-IOB folder (train.tsv, devel.tsv, test.tsv)")
    parser.add_argument("out", type=Path, help="folder to write train/devel/test.jsonl into (outside the repo)")
    parser.add_argument("--top", type=int, default=10, help="keep the N most frequent head words as labels")
    args = parser.parse_args()
    summary = convert(args.src, args.out, args.top)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
