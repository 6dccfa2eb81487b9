"""A domain lexicon: terms found in text by longest match, for knowledge-guided (entity) masking.

    masking: {strategy: knowledge, lexicon: terms.txt}        # or triples.tsv: head<TAB>relation<TAB>tail

ERNIE (Sun et al. 2019) masks whole entities and phrases instead of single pieces, so the model must recover a
domain term from its context, not from its other half. The lexicon comes from a term list (one term per line,
``#`` comments) or from knowledge-graph triples, whose heads and tails become terms. Matching walks a
character trie (the single-pattern core of Aho-Corasick) from each position and keeps the longest term;
matches do not overlap, and Latin-script terms must sit on word boundaries ("ear" never matches in "year").
"""

from __future__ import annotations

from pathlib import Path

from domainfit.errors import DataError

_END = ""  # trie key marking the end of a term


def _fold(ch: str) -> str:
    """Lower-case one character without changing the text's length (offsets must stay valid)."""
    low = ch.lower()
    return low if len(low) == 1 else ch


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


class Lexicon:
    """Terms of a domain, matched case-insensitively by longest match.

    Args:
        terms: the terms (surrounding whitespace is stripped; empty ones are dropped).
    """

    def __init__(self, terms: list[str]) -> None:
        self.terms = sorted({t.strip() for t in terms if t.strip()})
        self._trie: dict = {}
        for term in self.terms:
            node = self._trie
            for ch in term:
                node = node.setdefault(_fold(ch), {})
            node[_END] = term

    def __len__(self) -> int:
        return len(self.terms)

    @classmethod
    def from_file(cls, path: str | Path, *, key: str = "masking.lexicon") -> Lexicon:
        """Read a term list, or triples ``head<TAB>relation<TAB>tail`` (heads and tails become terms)."""
        path = Path(path)
        if not path.is_file():
            raise DataError("lexicon file not found", path=path, key=key, fix="check the path.")
        terms: list[str] = []
        triples = None
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if triples is None:
                triples = len(fields) >= 3
            if triples and len(fields) != 3:
                raise DataError(
                    f"expected a triple head<TAB>relation<TAB>tail, found {len(fields)} field(s)",
                    path=path,
                    line=line_no,
                    fix="use three tab-separated fields on every line, or a plain term list.",
                )
            if not triples and len(fields) != 1:
                raise DataError(
                    "a term list has one term per line (this line has a tab)",
                    path=path,
                    line=line_no,
                    fix="remove the tab, or give every line three fields (triples).",
                )
            terms += [fields[0], fields[2]] if triples else [fields[0]]
        lexicon = cls(terms)
        if not lexicon.terms:
            raise DataError("the lexicon holds no terms", path=path, key=key, fix="one term per line, or triples.")
        return lexicon

    def find(self, text: str) -> list[tuple[int, int]]:
        """Character spans ``[start, end)`` of term occurrences: leftmost-longest, non-overlapping."""
        spans = []
        folded = "".join(_fold(ch) for ch in text)
        i = 0
        while i < len(folded):
            end = (
                self._longest_at(folded, i)
                if i == 0 or not (_is_word_char(text[i - 1]) and _is_word_char(text[i]))
                else None
            )
            if end is None:
                i += 1
            else:
                spans.append((i, end))
                i = end
        return spans

    def _longest_at(self, text: str, start: int) -> int | None:
        node, best = self._trie, None
        for j in range(start, len(text)):
            node = node.get(text[j])
            if node is None:
                break
            if _END in node and not (j + 1 < len(text) and _is_word_char(text[j]) and _is_word_char(text[j + 1])):
                best = j + 1
        return best
