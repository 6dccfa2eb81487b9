"""Tests for domainfit.data.readers: every format, every user error, and the real data sets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from domainfit.data.data_files import read_text
from domainfit.data.readers import read_examples
from domainfit.data.records import Example
from domainfit.errors import DataError, MissingExtraError

DATASETS = Path(os.environ.get("DOMAINFIT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
PHRASEBANK = DATASETS / "financial_phrasebank"
needs_datasets = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"shared datasets not found at {DATASETS}")


def write(folder: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def read_error(path: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_examples(path, **kwargs)
    return info.value


# ----------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------


def test_csv_reads_text_and_label_with_line_numbers(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n  Profit rose ,positive \n"Sales, as expected, fell",negative\n')
    assert read_examples(path) == [
        Example("Profit rose", "positive", 2),
        Example("Sales, as expected, fell", "negative", 3),
    ]


def test_csv_multiline_quoted_field_keeps_later_line_numbers(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n"two\nlines",a\n\nnext,b\n')
    examples = read_examples(path)
    assert [(e.text, e.line) for e in examples] == [("two\nlines", 2), ("next", 5)]


def test_csv_integer_labels_become_strings_and_other_columns_are_ignored(tmp_path):
    path = write(tmp_path, "d.csv", "id,review,stars\n1,good,5\n2,bad,1\n")
    examples = read_examples(path, text_column="review", label_column="stars")
    assert [(e.text, e.label) for e in examples] == [("good", "5"), ("bad", "1")]


def test_csv_separator_override_and_header_spaces(tmp_path):
    path = write(tmp_path, "d.csv", "text; label\nhello;x\n")
    assert read_examples(path, separator=";") == [Example("hello", "x", 2)]


def test_csv_strips_utf8_bom(tmp_path):
    path = write(tmp_path, "d.csv", "\ufefftext,label\nhi,a\n")
    assert read_examples(path)[0].text == "hi"


def test_tsv_without_header_by_column_number(tmp_path):
    path = write(tmp_path, "d.tsv", "good stuff\tpositive\r\nbad stuff\tnegative\r\n")
    examples = read_examples(path, header=False, text_column=0, label_column=1)
    assert examples == [Example("good stuff", "positive", 1), Example("bad stuff", "negative", 2)]


def test_tsv_treats_quotes_as_text(tmp_path):
    # A leading quote must not start a quoted field that swallows the following lines.
    path = write(tmp_path, "d.tsv", 'text\tlabel\n"quoted" start\ta\nplain\tb\n')
    assert [(e.text, e.label) for e in read_examples(path)] == [('"quoted" start', "a"), ("plain", "b")]


def test_jsonl_reads_objects_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": "x", "extra": 3}\n')
    assert read_examples(path) == [Example("a", "1", 1), Example("b", "x", 3)]


def test_ndjson_extension_is_jsonl(tmp_path):
    path = write(tmp_path, "d.ndjson", '{"text": "a", "label": "x"}\n')
    assert read_examples(path) == [Example("a", "x", 1)]


def test_json_array_numbers_records(tmp_path):
    records = [{"query": "q1", "label": "A"}, {"query": "q2", "label": 3}]
    path = write(tmp_path, "d.json", json.dumps(records, indent=2))
    examples = read_examples(path, text_column="query")
    assert examples == [Example("q1", "A", 1), Example("q2", "3", 2)]
    assert examples[1].unit == "record" and examples[1].where == "record 2"


def test_integral_float_label_becomes_integer_string(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1.0}\n')
    assert read_examples(path)[0].label == "1"


def test_delimited_splits_on_last_separator_with_crlf_and_lone_cr(tmp_path):
    content = "a@b sentence@positive\r\n\r\nsecond@negative\rthird @ neutral \n"
    path = write(tmp_path, "d.txt", content, encoding="latin-1")
    examples = read_examples(path, format="delimited", separator="@", encoding="latin-1")
    assert examples == [
        Example("a@b sentence", "positive", 1),
        Example("second", "negative", 3),
        Example("third", "neutral", 4),
    ]


def test_delimited_line_without_separator_is_unlabelled_when_labels_optional(tmp_path):
    path = write(tmp_path, "d.txt", "no label here\nwith@x\n")
    examples = read_examples(path, format="delimited", separator="@", require_labels=False)
    assert [(e.text, e.label) for e in examples] == [("no label here", None), ("with", "x")]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [" a ", "b"], "label": [0, 1]}), path)
    assert read_examples(path) == [Example("a", "0", 1), Example("b", "1", 2)]


def test_parquet_missing_column_lists_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"sentence": ["a"], "label": [0]}), path)
    error = read_error(path)
    assert "'sentence'" in str(error) and error.column == "text"


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = write(tmp_path, "d.parquet", b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes the import fail
    with pytest.raises(MissingExtraError) as info:
        read_examples(path)
    assert 'pip install "domainfit[parquet]"' in str(info.value)


def test_not_a_parquet_file(tmp_path):
    pytest.importorskip("pyarrow")
    path = write(tmp_path, "d.parquet", "text,label\na,b\n")
    assert "Parquet" in str(read_error(path))


def test_unlabelled_file_gives_none_labels(tmp_path):
    path = write(tmp_path, "d.csv", "text\nhello\n")
    assert read_examples(path, require_labels=False) == [Example("hello", None, 2)]
    assert read_examples(path, label_column=None) == [Example("hello", None, 2)]


def test_empty_label_is_none_when_labels_optional(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhello,\n")
    assert read_examples(path, require_labels=False)[0].label is None


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_missing_file_suggests_similar_names(tmp_path):
    write(tmp_path, "train.csv", "text,label\na,b\n")
    error = read_error(tmp_path / "trian.csv")
    assert "not found" in error.what and "train.csv" in str(error) and error.fix


def test_missing_folder(tmp_path):
    error = read_error(tmp_path / "nowhere" / "train.csv")
    assert "does not exist" in error.what


def test_directory_instead_of_file_lists_data_files(tmp_path):
    write(tmp_path, "train.csv", "text,label\na,b\n")
    error = read_error(tmp_path)
    assert "folder" in error.what and "train.csv" in error.what and error.fix


@pytest.mark.parametrize("content", ["", "text,label\n", "\n\n  \n"])
def test_empty_file_or_no_records(tmp_path, content):
    error = read_error(write(tmp_path, "d.csv", content))
    assert "no records" in error.what and error.fix


def test_missing_column_lists_columns_and_near_miss(tmp_path):
    path = write(tmp_path, "d.csv", "sentence,labels\na,b\n")
    error = read_error(path)
    assert error.line == 1 and error.column == "text"
    assert "'sentence', 'labels'" in error.what
    error = read_error(path, text_column="sentence")
    assert error.column == "label" and "did you mean 'labels'" in error.fix


def test_wrong_separator_is_diagnosed(tmp_path):
    path = write(tmp_path, "d.csv", "text;label\na;b\n")
    assert "separator" in read_error(path).fix


def test_duplicate_column_name(tmp_path):
    path = write(tmp_path, "d.csv", "text,text,label\na,b,c\n")
    assert "2 times" in read_error(path).what


def test_ragged_row_gives_line_counts_and_quoting_hint(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nok,a\nSales, as expected, fell,b\n")
    error = read_error(path)
    assert error.line == 3
    assert "expected 2 fields" in error.what and "found 4" in error.what
    assert "double quotes" in error.fix
    assert "line 3" in str(error) and "How to fix" in str(error)


def test_short_row(tmp_path):
    error = read_error(write(tmp_path, "d.csv", "text,label\nok,a\nlonely\n"))
    assert error.line == 3 and "found 1" in error.what


def test_unclosed_quote_points_at_its_line(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n"never closed,a\nnext,b\nlast,c\n')
    error = read_error(path)
    assert error.line == 2 and "never closed" in error.fix


def test_tsv_ragged_row_mentions_no_quoting(tmp_path):
    path = write(tmp_path, "d.tsv", "text\tlabel\na\tb\tc\n")
    error = read_error(path)
    assert error.line == 2 and "no quoting" in error.fix


def test_undecodable_bytes_give_line_offset_and_encoding(tmp_path):
    path = write(tmp_path, "d.txt", "first@neutral\r\nEspa\u00f1a grew@positive\r\n", encoding="latin-1")
    error = read_error(path, format="delimited", separator="@")
    assert error.line == 2
    assert "0xf1" in error.what and "byte 5 of this line" in error.what
    assert "encoding: latin-1" in error.fix


def test_undecodable_chinese_suggests_gb18030(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\n这家酒店很好,positive\n", encoding="gbk")
    error = read_error(path)
    assert error.line == 2 and "gb18030" in error.fix


def test_utf16_file_suggests_utf16(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhi,a\n", encoding="utf-16")
    assert "utf-16" in read_error(path).fix
    assert read_examples(path, encoding="utf-16") == [Example("hi", "a", 2)]


def test_unknown_encoding_name(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhi,a\n")
    assert "unknown text encoding" in read_error(path, encoding="utf-9").what


def test_binary_file(tmp_path):
    error = read_error(write(tmp_path, "d.csv", b"text,label\nab\x00cd,x\n"))
    assert "binary" in error.what and error.line == 2


def test_parquet_content_in_csv_is_recognised(tmp_path):
    error = read_error(write(tmp_path, "d.csv", b"PAR1\x00\x00\x15"))
    assert "format: parquet" in error.fix


@pytest.mark.parametrize("row", ["   ,a", '"",a'])
def test_empty_text(tmp_path, row):
    error = read_error(write(tmp_path, "d.csv", f"text,label\nok,a\n{row}\n"))
    assert error.line == 3 and error.column == "text"
    assert "empty" in error.what and "remove this row" in error.fix


def test_empty_label_when_required(tmp_path):
    error = read_error(write(tmp_path, "d.csv", "text,label\nok,a\nno label, \n"))
    assert error.line == 3 and error.column == "label" and "label" in error.what
    assert "remove this row" in error.fix and "require_labels" not in error.fix  # not a config key


def test_missing_label_key_in_jsonl(tmp_path):
    error = read_error(write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n'))
    assert error.line == 2 and "'label'" in error.what and "'text'" in error.what


def test_invalid_jsonl_line_gives_line_and_column(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": }\n')
    error = read_error(path)
    assert error.line == 2 and "character 24" in error.what


def test_jsonl_line_that_is_not_an_object(tmp_path):
    error = read_error(write(tmp_path, "d.jsonl", '["a", "x"]\n'))
    assert error.line == 1 and "expected a JSON object" in error.what


def test_json_that_is_not_an_array(tmp_path):
    error = read_error(write(tmp_path, "d.json", '{"data": [{"text": "a", "label": "x"}]}'))
    assert "expected a JSON array of objects, found a JSON object" in error.what
    assert "'data'" in error.what and error.fix


def test_json_array_of_non_objects_names_the_record(tmp_path):
    error = read_error(write(tmp_path, "d.json", '[{"text": "a", "label": "x"}, "b"]'))
    assert error.line is None and "record 2" in str(error)


def test_json_lines_given_as_json_suggests_jsonl(tmp_path):
    error = read_error(write(tmp_path, "d.json", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'))
    assert error.line == 2 and "format: jsonl" in error.fix


def test_invalid_json_gives_line(tmp_path):
    error = read_error(write(tmp_path, "d.json", '[\n  {"text": "a", "label": "x"},\n  {"text": }\n]'))
    assert error.line == 3


@pytest.mark.parametrize("label", ["[1, 2]", "1.5", "true", '{"a": 1}'])
def test_label_that_is_not_a_string_or_integer(tmp_path, label):
    path = write(tmp_path, "d.jsonl", f'{{"text": "ok", "label": "x"}}\n{{"text": "a", "label": {label}}}\n')
    error = read_error(path)
    assert error.line == 2 and error.column == "label" and "expected the label" in error.what


def test_text_that_is_not_a_string(tmp_path):
    error = read_error(write(tmp_path, "d.jsonl", '{"text": ["a"], "label": "x"}\n'))
    assert error.line == 1 and "expected the text to be a string" in error.what


def test_txt_needs_an_explicit_format(tmp_path):
    error = read_error(write(tmp_path, "d.txt", "a@b\n"))
    assert "format: delimited" in error.fix


def test_unknown_extension_and_unknown_format(tmp_path):
    assert "extension '.xlsx'" in read_error(write(tmp_path, "d.xlsx", "x")).what
    error = read_error(write(tmp_path, "d.csv", "text,label\na,b\n"), format="jsonlines")
    assert "unknown data format" in error.what and "jsonl" in error.fix


def test_delimited_needs_a_separator(tmp_path):
    error = read_error(write(tmp_path, "d.txt", "a@b\n"), format="delimited")
    assert "separator" in error.fix


def test_delimited_line_without_separator(tmp_path):
    error = read_error(write(tmp_path, "d.txt", "a@b\nno separator\n"), format="delimited", separator="@")
    assert error.line == 2 and "no '@'" in error.what


def test_column_name_without_header(tmp_path):
    error = read_error(write(tmp_path, "d.tsv", "a\tb\n"), header=False)
    assert "without a header" in error.what and "0-based" in error.fix


def test_column_number_out_of_range(tmp_path):
    error = read_error(write(tmp_path, "d.tsv", "a\tb\n"), header=False, text_column=0, label_column=2)
    assert "found 2" in error.what and error.column == 2


def test_multi_character_csv_separator(tmp_path):
    error = read_error(write(tmp_path, "d.csv", "text||label\n"), separator="||")
    assert "format: delimited" in error.fix


def test_read_text_reports_binary_line(tmp_path):
    path = write(tmp_path, "d.bin", b"ok\nstill ok\n\x00")
    with pytest.raises(DataError) as info:
        read_text(path, "utf-8")
    assert info.value.line == 3


# ----------------------------------------------------------------------------------------------
# Real data sets
# ----------------------------------------------------------------------------------------------


@needs_datasets
def test_phrasebank_50agree():
    examples = read_examples(
        PHRASEBANK / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt",
        format="delimited",
        separator="@",
        encoding="latin-1",
    )
    assert len(examples) == 4846
    assert {e.label for e in examples} == {"negative", "neutral", "positive"}
    assert examples[-1].line == 4846
    assert all("@" not in e.label for e in examples)


@needs_datasets
def test_phrasebank_read_as_utf8_points_at_the_bad_byte():
    error = read_error(
        PHRASEBANK / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt", format="delimited", separator="@"
    )
    assert error.line == 15 and "0xf1" in error.what and "latin-1" in error.fix


@needs_datasets
@pytest.mark.parametrize("name, n", [("train.csv", 3870), ("val.csv", 484), ("test.csv", 484)])
def test_phrasebank_split_seed42_csvs(name, n):
    examples = read_examples(PHRASEBANK / "split_seed42" / name)
    assert len(examples) == n
    assert {e.label for e in examples} == {"negative", "neutral", "positive"}


@needs_datasets
def test_kuake_qic_json():
    examples = read_examples(DATASETS / "cblue_kuake_qic" / "KUAKE-QIC_train.json", text_column="query")
    assert len(examples) == 6931
    assert examples[0] == Example("丰胸的方法有哪些", "治疗方案", 1)
    assert len({e.label for e in examples}) == 11


@needs_datasets
def test_chnsenticorp_headerless_tsv():
    examples = read_examples(DATASETS / "chnsenticorp" / "train.tsv", header=False, text_column=0, label_column=1)
    assert len(examples) == 9600
    assert Counter(e.label for e in examples) == {"negative": 4801, "positive": 4799}


def test_missing_txt_file_is_reported_as_missing_not_as_unknown_format(tmp_path):
    assert "not found" in read_error(tmp_path / "sentences.txt").what


# ----------------------------------------------------------------------------------------------
# Hardening: long fields, special files, unreadable files, deep JSON, mixed encodings, columns
# ----------------------------------------------------------------------------------------------


def test_csv_field_longer_than_csv_default_limit_is_read(tmp_path):
    # csv's default field_size_limit is 131,072 characters; a long clinical note is more.
    note = "The patient reports pain. " * 8000  # 208,000 characters
    path = write(tmp_path, "d.csv", f'text,label\n"{note}",surgery\nshort,cardiology\n')
    examples = read_examples(path)
    assert [len(e.text) for e in examples] == [len(note.strip()), 5]
    assert examples[1].line == 3


def test_csv_unclosed_quote_before_a_long_tail_still_points_at_the_quote(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n"never closed,a\n' + "row,b\n" * 30000)
    error = read_error(path)
    assert error.line == 2 and "never closed" in error.fix and "field limit" not in str(error)


def test_csv_field_size_limit_is_restored_after_reading(tmp_path):
    import csv

    before = csv.field_size_limit()
    read_examples(write(tmp_path, "d.csv", "text,label\n" + "x" * 200_000 + ",a\n"))
    assert csv.field_size_limit() == before


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


def _in_thread(function):
    """Run ``function`` in a thread: (finished within 30 s, its result or exception)."""
    outcome = []

    def run():
        try:
            outcome.append(function())
        except Exception as e:  # noqa: BLE001 - handed to the test to assert on
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    return not thread.is_alive(), outcome[0] if outcome else None


@needs_fifo
def test_named_pipe_without_writer_is_an_error_instead_of_waiting_forever(tmp_path):
    fifo = tmp_path / "d.csv"
    os.mkfifo(fifo)
    finished, outcome = _in_thread(lambda: read_examples(fifo))
    if not finished:  # the reader is stuck waiting for a writer: release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a named pipe waited for a writer")
    assert isinstance(outcome, DataError), outcome
    assert "no program was writing" in outcome.what and "regular file" in outcome.fix
    assert outcome.path == str(fifo)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for process substitution")
def test_pipe_from_process_substitution_is_read_to_its_end():
    # `domainfit predict MODEL <(zcat texts.csv.gz) ...` hands the reader a pipe that a program writes to.
    read = "import sys; from domainfit.data import read_examples as r; print(r(sys.argv[1], format='csv'))"
    script = f'"$0" -c "{read}" <(printf "text,label\\nhi,a\\n")'
    proc = subprocess.run(["bash", "-c", script, sys.executable], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Example(text='hi', label='a', line=2" in proc.stdout


@needs_fifo
def test_parquet_from_a_named_pipe_is_refused(tmp_path):
    fifo = tmp_path / "d.parquet"
    os.mkfifo(fifo)
    assert "named pipe" in read_error(fifo).what


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_character_device_is_refused():
    error = read_error(Path("/dev/null"), format="csv")
    assert "character device" in error.what


def test_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path, "d.csv", "text,label\nhi,a\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: simulate the refusal

        def refuse(self):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", refuse)
    try:
        error = read_error(path)
    finally:
        path.chmod(0o644)
    assert "permission denied" in error.what and "chmod" in error.fix and error.path == str(path)


def test_jsonl_nested_too_deep_names_the_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n' + "[" * 200_000 + "]" * 200_000 + "\n")
    error = read_error(path)
    assert error.line == 2 and "200000 levels deep" in error.what and error.fix


def test_json_nested_too_deep_names_the_line(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    records = f'[\n {{"text": "a", "label": "x"}},\n {{"text": "[{{", "label": {deep}}}\n]\n'
    path = write(tmp_path, "d.json", records)
    error = read_error(path)
    assert error.line == 3 and "levels deep" in error.what


def test_json_integer_too_long_for_python_names_the_line(tmp_path):
    path = write(tmp_path, "d.json", '[\n {"text": "a", "label": ' + "7" * 5000 + "}\n]\n")
    error = read_error(path)
    assert error.line == 2 and "as strings" in error.fix


def _mixed_file(tmp_path: Path) -> Path:
    """UTF-8 with accents for 500 records, then one saved as cp1252: no single encoding reads it right."""
    utf8 = "".join(f"café number {i},a\n" for i in range(500)).encode("utf-8")
    return write(tmp_path, "d.csv", b"text,label\n" + utf8 + "naïve,b\n".encode("cp1252") + b"last,a\n")


def test_mixed_encodings_are_named_instead_of_suggesting_a_garbling_encoding(tmp_path):
    error = read_error(_mixed_file(tmp_path))
    assert error.line == 502
    assert "mixes encodings" in error.what and "re-save" in error.fix and "line 502" in error.fix
    assert "`encoding:" not in error.fix  # no `encoding: gb18030` / `latin-1` that would garble lines 2-501


def test_suggested_encoding_reads_the_lines_before_the_bad_one_unchanged(tmp_path):
    # ASCII, then cp1252: latin-1/cp1252 reads the whole file and the ASCII lines stay as they are.
    path = write(tmp_path, "d.csv", b"text,label\nplain,a\n" + "naïve,b\n".encode("cp1252"))
    error = read_error(path)
    assert error.line == 3 and "encoding: latin-1" in error.fix
    assert [e.text for e in read_examples(path, encoding="latin-1")] == ["plain", "naïve"]


def test_headerless_column_numbers_given_as_strings(tmp_path):
    # What `--text-column 0 --no-header` and a quoted YAML `text_column: '0'` give.
    path = write(tmp_path, "d.csv", "good,a\nbad,b\n")
    examples = read_examples(path, header=False, text_column="0", label_column="1")
    assert [(e.text, e.label) for e in examples] == [("good", "a"), ("bad", "b")]


def test_column_number_that_the_header_also_names_elsewhere_is_ambiguous(tmp_path):
    path = write(tmp_path, "d.csv", "1,0\ngood,a\n")
    error = read_error(path, text_column=0, label_column=1)
    assert "ambiguous" in error.what and error.column == 0 and error.line == 1
    assert [e.text for e in read_examples(path, text_column="1", label_column="0")] == ["good"]


def test_column_number_as_a_string_with_a_header_says_how_to_pick_by_position(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\ngood,a\n")
    error = read_error(path, text_column="0")
    assert "by position that is 'text'" in error.what and "--no-header" in error.fix


def test_integer_column_in_json_names_the_key(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"0": "good", "1": "a"}\n')
    assert read_examples(path, text_column=0, label_column=1) == [Example("good", "a", 1)]


def test_skip_empty_leaves_out_empty_texts_and_reports_their_lines(tmp_path, caplog):
    path = write(tmp_path, "d.csv", 'text,label\nok,a\n   ,b\n"",c\nfine,d\n')
    skipped: list[int] = []
    with caplog.at_level("INFO", logger="domainfit.data.readers"):
        examples = read_examples(path, skip_empty=True, skipped=skipped)
    assert [e.line for e in examples] == [2, 5] and skipped == [3, 4]
    assert "left out 2 records with empty text" in caplog.text and "lines 3, 4" in caplog.text


def test_skip_empty_with_nothing_left_is_an_error(tmp_path):
    error = read_error(write(tmp_path, "d.jsonl", '{"text": " ", "label": "a"}\n'), skip_empty=True)
    assert "all 1 records have empty text" in error.what


def test_shipped_chnsenticorp_config_reads_its_headerless_tsv():
    from domainfit.tasks import load_run_config as load_config
    from domainfit.tasks.text_classification import read_split

    cfg = load_config(Path(__file__).resolve().parents[1] / "src/domainfit/configs/chnsenticorp_windows.yaml")
    assert (cfg.data.text_column, cfg.data.label_column) == (0, 1)  # numbers, not the names '0' and '1'
    if not Path(cfg.data.train).is_file():
        pytest.skip(f"shared datasets not found: {cfg.data.train}")
    examples = read_split(cfg.data.train, cfg.data)
    assert len(examples) == 9600 and {e.label for e in examples} == {"negative", "positive"}
