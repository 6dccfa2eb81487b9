"""One reader of unlabelled text (``data/corpus.py``): `domainfit mine`, `inspect`, `pretrain` and the joint MLM
objective read the same folder as the same texts; its rules (files, formats, whitespace, encodings) and errors;
the resume position across multi-line CSV records."""

from __future__ import annotations

import json

import pytest
import yaml

from domainfit.cli import main
from domainfit.data.corpus import (
    CorpusStream,
    StreamPosition,
    count_texts,
    iter_texts,
    list_text_files,
    read_records,
    read_texts,
)
from domainfit.errors import DataError

# What the pool below holds, in reading order (files sorted; hidden ones skipped; whitespace cleaned).
POOL_TEXTS = [
    "operating profit rose sharply",
    "net sales fell by five percent",
    "the board approved a dividend",
    "a note that spans two lines in the cell",
    "orders grew in the third quarter",
    '"Great" is what they said about the quarter',
    "a review after the quoted one",
]


@pytest.fixture
def pool(tmp_path):
    root = tmp_path / "pool"
    (root / ".ipynb_checkpoints").mkdir(parents=True)
    (root / "a.txt").write_text(
        "  operating profit rose sharply  \n\n\tnet sales  fell by five percent\r\n", encoding="utf-8"
    )
    (root / "b.ndjson").write_text('{"text": " the board approved a dividend "}\n\n{"text": null}\n', encoding="utf-8")
    (root / "c.csv").write_text(
        'id,text\n1,"a note that spans\ntwo lines in the cell"\n2,  orders grew in the third quarter \n',
        encoding="utf-8",
    )
    # TSV has no quoting (as `domainfit train` reads it): a leading quote must not swallow the next line
    (root / "sub").mkdir()
    (root / "sub" / "d.tsv").write_text(
        'text\tlabel\n"Great" is what they said about the quarter\tp\na review after the quoted one\tn\n',
        encoding="utf-8",
    )
    (root / ".hidden.txt").write_text("a hidden file is not pool text\n", encoding="utf-8")
    (root / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("nor is a hidden folder's\n", encoding="utf-8")
    return root


def test_mine_inspect_and_pretrain_read_a_folder_as_the_same_texts(pool, tmp_path, tiny_bert, monkeypatch, capsys):
    import domainfit.evaluation.diagnostics as diagnostics

    # inspect: the texts it measures (the real measurement still runs and writes its report)
    measured: list[str] = []
    real_inspect = diagnostics.inspect_corpus

    def spy(texts, *args, **kwargs):
        measured.extend(texts)
        return real_inspect(texts, *args, **kwargs)

    monkeypatch.setattr(diagnostics, "inspect_corpus", spy)
    assert (
        main(
            [
                "inspect",
                str(pool),
                "--model",
                str(tiny_bert),
                "--mlm-sample",
                "0",
                "--output",
                str(tmp_path / "inspect"),
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert measured == POOL_TEXTS

    # mine: with k at least the pool's size, every pool text is mined, in pool order
    task = tmp_path / "task.txt"
    task.write_text("profit and sales in the quarter\n", encoding="utf-8")
    mined = tmp_path / "mined" / "corpus.txt"
    assert (
        main(
            [
                "mine",
                str(pool),
                "--task-texts",
                str(task),
                "--model",
                str(tiny_bert),
                "--k",
                "10",
                "--output",
                str(mined),
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert mined.read_text(encoding="utf-8").splitlines() == POOL_TEXTS

    # pretrain (and the joint objective): the files, the counting pass, the held-out read and the stream
    files = list_text_files(pool, key="corpus.train")
    assert [f.name for f in files] == ["a.txt", "b.ndjson", "c.csv", "d.tsv"]
    reading = {"fmt": "auto", "column": "text", "encoding": "utf-8"}
    assert count_texts(files, **reading) == len(POOL_TEXTS)
    assert read_texts(files, limit=100, **reading) == POOL_TEXTS
    epoch = [text for _, text in zip(range(len(POOL_TEXTS)), CorpusStream(files, block=2, seed=0, **reading))]
    assert sorted(epoch) == sorted(POOL_TEXTS)

    # and the mined corpus, read back as a pretraining corpus, is the same texts again
    assert read_texts([mined], limit=100, **reading) == POOL_TEXTS


def test_resume_inside_a_csv_with_multi_line_records_continues_exactly(tmp_path):
    corpus = tmp_path / "notes.csv"
    rows = [f'{i},"note {i} first line\nnote {i} second line"' if i % 3 == 0 else f"{i},note {i}" for i in range(20)]
    corpus.write_text("id,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    records = list(read_records(corpus))
    assert [text for _, _, text in records][:2] == ["note 0 first line note 0 second line", "note 1"]
    assert [line for line, _, _ in records][:3] == [3, 4, 5]  # the line each record ends on
    for line, byte, _ in records[:-1]:  # resuming at any record's end gives exactly the records after it
        assert list(read_records(corpus, start_byte=byte, start_line=line)) == [r for r in records if r[0] > line]
    for consumed in (1, 5, 13):
        stream = CorpusStream([corpus], block=4, seed=2)
        texts = iter(stream)
        for _ in range(consumed):
            next(texts)
        saved = json.loads(json.dumps(stream.position.to_dict()))
        expected = [next(texts) for _ in range(10)]
        resumed = iter(CorpusStream([corpus], block=4, seed=2, position=StreamPosition(**saved)))
        assert [next(resumed) for _ in range(10)] == expected, consumed


def test_byte_order_mark_and_encodings(tmp_path):
    with_bom = tmp_path / "excel.csv"
    with_bom.write_bytes(b"\xef\xbb\xbftext,label\nfirst text,a\n")
    assert [t.text for t in iter_texts([with_bom])] == ["first text"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Osakevaihto kasvoi 5 %, ja liikevaihto oli 10 milj. €\n".encode("cp1252"))
    with pytest.raises(DataError) as e:
        list(iter_texts([latin]))
    assert "latin.txt, line 1" in str(e.value) and "encoding" in str(e.value)
    assert [t.text for t in iter_texts([latin], encoding="cp1252")][0].endswith("milj. €")
    wide = tmp_path / "wide.txt"
    wide.write_text("text\n", encoding="utf-16")
    with pytest.raises(DataError, match="not supported") as e:
        list(iter_texts([wide], encoding="utf-16"))
    assert "UTF-8" in str(e.value)
    with pytest.raises(DataError, match="unknown text encoding 'utf-9'"):
        list(iter_texts([latin], encoding="utf-9"))


def test_record_errors_name_the_file_line_and_column(tmp_path):
    numbers = tmp_path / "n.jsonl"
    numbers.write_text('{"text": "fine"}\n{"text": 42}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(read_records(numbers))
    assert "n.jsonl, line 2, column 'text'" in str(e.value) and "int, not a text" in str(e.value)
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"text": "ok"}, {"body": "no text"}]), encoding="utf-8")
    with pytest.raises(DataError, match="array item 2: expected an object with the key 'text'"):
        list(read_records(array))
    short = tmp_path / "s.tsv"
    short.write_text("id\ttext\n1\tfine\n2\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(read_records(short))
    assert "s.tsv, line 3" in str(e.value) and "1 fields" in str(e.value)
    unclosed = tmp_path / "u.csv"
    unclosed.write_text('id,text\n1,"never closed\n', encoding="utf-8")
    with pytest.raises(DataError, match="malformed CSV"):  # not the rest of the file read as one text
        list(read_records(unclosed))
    swallowing = tmp_path / "w.csv"
    swallowing.write_text('label,id,text\n"opened here,1,a\nnext row,2,b\nclosed",3\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(read_records(swallowing))
    assert "w.csv, line 2" in str(e.value) and "runs from line 2 to line 4" in str(e.value)
    headerless = tmp_path / "h.csv"
    headerless.write_text("first row text,x\nsecond row text,y\n", encoding="utf-8")
    assert [t.text for t in iter_texts([headerless], text_column=0)] == ["first row text", "second row text"]


def test_file_rules(tmp_path):
    (tmp_path / "only_hidden").mkdir()
    (tmp_path / "only_hidden" / ".notes.txt").write_text("hidden\n", encoding="utf-8")
    with pytest.raises(DataError, match="hidden files are skipped") as e:
        list_text_files(tmp_path / "only_hidden", key="corpus.train")
    assert "key 'corpus.train'" in str(e.value)
    log = tmp_path / "notes.log"
    log.write_text("one text\n", encoding="utf-8")
    with pytest.raises(DataError, match="extension '.log'"):
        list_text_files(log, key="corpus.train")
    assert list_text_files(log, fmt="text") == [log]  # a format set explicitly reads any file
    assert [t for _, _, t in read_records(log, fmt="text")] == ["one text"]
    hidden = tmp_path / "only_hidden" / ".notes.txt"
    assert list_text_files([hidden]) == [hidden]  # a file named on purpose is read


def test_pretrain_cli_reports_a_bad_corpus_in_one_message(tmp_path, capsys):
    corpus = tmp_path / "corpus.csv"
    corpus.write_text('id,text\n1,fine text\n2,"never closed\n', encoding="utf-8")
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "does-not-matter"},
                "corpus": {"train": str(corpus)},
                "output": {"dir": str(tmp_path / "out")},
            }
        ),
        encoding="utf-8",
    )
    assert main(["pretrain", str(config)]) == 2
    err = capsys.readouterr().err
    assert "corpus.csv, line 3" in err and "malformed CSV" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
