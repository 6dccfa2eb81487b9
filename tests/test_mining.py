"""kNN-TAPT mining: the right neighbours, the same result however the pool is chunked, duplicates kept once,
held-out texts never selected, the report's fields; the pool readers; and clean CLI errors."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from domainfit.cli import main
from domainfit.data.corpus import SourcedText, iter_texts, sample_texts
from domainfit.errors import DataError
from domainfit.mining import KnnMiner, MiningOptions, leakage_key, mine, write_mining_outputs


class LookupEmbedder:
    """Deterministic embeddings: a given vector for known texts, a text-seeded random one otherwise."""

    def __init__(self, table: dict[str, list[float]] | None = None, dim: int = 8) -> None:
        self.table, self.dim, self.calls = table or {}, dim, 0

    def __call__(self, texts):
        self.calls += 1
        rows = []
        for t in texts:
            if t in self.table:
                v = np.asarray(self.table[t], dtype=np.float64)
            else:
                v = np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


def pool_of(texts):
    return [SourcedText(t, "pool.txt", i) for i, t in enumerate(texts, start=1)]


def test_each_task_text_gets_its_known_nearest_pool_texts():
    table = {
        "q-x": [1, 0, 0],
        "q-y": [0, 1, 0],
        "near-x-1": [1, 0.1, 0],
        "near-x-2": [1, 0.3, 0],
        "far-x": [1, 2, 0],
        "near-y-1": [0.05, 1, 0],
        "near-y-2": [0.4, 1, 0],
        "noise-1": [0, 0, 1],
        "noise-2": [0, -0.2, 1],
    }
    embed = LookupEmbedder(table, dim=3)
    pool = pool_of(["noise-1", "far-x", "near-y-2", "near-x-2", "near-x-1", "near-y-1", "noise-2"])
    result = mine(pool, ["q-x", "q-y"], embed, options=MiningOptions(k=2, chunk_size=3))
    assert sorted(t.text for t in result.selected) == ["near-x-1", "near-x-2", "near-y-1", "near-y-2"]
    assert [t.text for t in result.selected] == ["near-y-2", "near-x-2", "near-x-1", "near-y-1"]  # pool order
    nearest = result.stats["examples"][0]["nearest"]
    assert [n["text"] for n in nearest] == ["near-x-1", "near-x-2"]
    assert nearest[0]["similarity"] == pytest.approx(1 / np.sqrt(1.01), abs=1e-4)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_streaming_chunks_give_the_all_at_once_result(chunk_size):
    rng = np.random.default_rng(0)
    texts = [f"pool text {i}" for i in range(300)]
    texts += [texts[i] for i in rng.integers(0, 300, 40)]  # exact duplicates
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    # ties with different texts: twins share a vector
    table = {f"twin {i} {side}": [1.0, i, 0, 0, 0, 0, 0, 0] for i in range(5) for side in "ab"}
    texts += list(table)
    queries = [f"task text {i}" for i in range(25)] + ["twin 0 a"]
    embed = LookupEmbedder(table)
    reference = KnnMiner(embed(queries), 6)
    admitted = reference.admit(pool_of(texts))
    reference.add(admitted, embed([t.text for t in admitted]))

    streamed = KnnMiner(embed(queries), 6)
    items = pool_of(texts)
    for start in range(0, len(items), chunk_size):
        chunk = streamed.admit(items[start : start + chunk_size])
        if chunk:
            streamed.add(chunk, embed([t.text for t in chunk]))
    pick = lambda m: [m.candidates[p].item for p in m.select()]  # noqa: E731
    assert pick(streamed) == pick(reference)
    for q in range(len(queries)):
        assert [t.text for t, _ in streamed.neighbours(q)] == [t.text for t, _ in reference.neighbours(q)]
    # the twin query's neighbours: itself ("twin 0 a" is in the pool), then "twin 0 b" (tie broken by pool order)
    assert [t.text for t, _ in streamed.neighbours(len(queries) - 1)][:2] == ["twin 0 a", "twin 0 b"]


def test_duplicates_are_kept_once_and_held_out_texts_are_never_selected():
    table = {"q": [1, 0], "Profit rose .": [1, 0.01], "Sales fell sharply .": [1, 0.02], "other": [0, 1]}
    embed = LookupEmbedder(table, dim=2)
    pool = pool_of(
        ["Profit rose .", "Profit  rose .", "Sales fell sharply .", "SALES fell   sharply .", "other", "Profit rose ."]
    )
    result = mine(pool, ["q"], embed, exclude_texts=["sales fell sharply ."], options=MiningOptions(k=10, chunk_size=2))
    texts = [t.text for t in result.selected]
    assert texts == ["Profit rose .", "other"]
    assert result.stats["excluded_as_leakage"] == 2
    assert result.stats["duplicate_copies_skipped"] == 2
    assert result.stats["pool_texts_read"] == 6 and result.stats["pool_texts_scored"] == 2
    assert leakage_key(" A  b ") == leakage_key("a B")


def test_cap_keeps_every_task_texts_best_neighbour_first():
    table = {
        "qa": [1, 0, 0],
        "qb": [0, 1, 0],
        "qc": [0, 0, 1],
        "a1": [1, 0.1, 0],
        "a2": [1, 0.2, 0],
        "a3": [1, 0.3, 0],
        "b1": [0, 1, 0.5],
        "c1": [0.1, 0, 1],
        "c2": [0.2, 0, 1],
    }
    result = mine(
        pool_of(["a1", "a2", "a3", "b1", "c1", "c2"]),
        ["qa", "qb", "qc"],
        LookupEmbedder(table, dim=3),
        options=MiningOptions(k=3, max_total=4),
    )
    assert [t.text for t in result.selected] == ["a1", "a2", "b1", "c1"]
    assert result.stats["selected_before_cap"] == 6 and result.stats["selected"] == 4


def test_report_files_and_fields(tmp_path):
    embed = LookupEmbedder()
    pool = pool_of([f"sentence number {i}" for i in range(50)])
    result = mine(
        pool,
        ["task one", "task two", "task three"],
        embed,
        exclude_texts=["sentence number 3"],
        options=MiningOptions(k=4, chunk_size=16, n_examples=2, contrast_sample=10),
    )
    corpus, json_path, md_path = write_mining_outputs(result, tmp_path / "out" / "corpus.txt", {"pool": ["pool.txt"]})
    lines = corpus.read_text(encoding="utf-8").splitlines()
    assert lines == [t.text for t in result.selected] and 4 <= len(lines) <= 12
    assert "sentence number 3" not in lines
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["selected"] == len(lines) and report["excluded_as_leakage"] == 1 and report["k"] == 4
    sel, rnd = report["similarity_selected"], report["similarity_random_pool_sample"]
    assert sel["n"] == len(lines) and rnd["n"] == 10
    assert sel["min"] <= sel["median"] <= sel["max"] and rnd["min"] <= rnd["median"] <= rnd["max"]
    assert sel["median"] >= rnd["median"] and 0 <= report["random_share_at_least_selected_median"] <= 1
    assert len(report["examples"]) == 2 and len(report["examples"][0]["nearest"]) == 3
    assert report["selected_by_source"] == {"pool.txt": len(lines)}
    md = md_path.read_text(encoding="utf-8")
    assert "Excluded as leakage" in md and "random pool sample" in md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["corpus.txt", "mining.json", "mining_report.md"]


def test_pool_readers_stream_text_jsonl_csv_and_folders(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("first line\n\n  second   line \n", encoding="utf-8")
    (tmp_path / "d" / "sub" / "b.jsonl").write_text('{"body": "from json"}\n{"body": ""}\n', encoding="utf-8")
    (tmp_path / "d" / "c.csv").write_text('id,body\n1,"a, quoted text"\n', encoding="utf-8")
    (tmp_path / "d" / "notes.md").write_text("ignored", encoding="utf-8")
    got = [(t.text, t.line) for t in iter_texts([tmp_path / "d"], text_column="body")]
    assert got == [("first line", 1), ("second line", 3), ("a, quoted text", 2), ("from json", 1)]
    assert [t.text for t in iter_texts([tmp_path / "d"], text_column="body", min_chars=12)] == ["a, quoted text"]
    sample = sample_texts(pool_of([str(i) for i in range(1000)]), 10, seed=1)
    assert len(sample) == 10 and [s.line for s in sample] == sorted(s.line for s in sample)
    assert sample != sample_texts(pool_of([str(i) for i in range(1000)]), 10, seed=2)


def test_pool_reader_errors_name_file_and_line(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(iter_texts([tmp_path / "nope.txt"]))
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text key"}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(iter_texts([bad]))
    assert "line 2" in str(e.value) and "'text'" in str(e.value)
    with pytest.raises(DataError, match="extension"):
        (tmp_path / "y.docx").write_text("x")
        list(iter_texts([tmp_path / "y.docx"]))


def test_cli_errors_are_one_clean_message(tmp_path, capsys):
    task = tmp_path / "task.txt"
    task.write_text("a task text\n", encoding="utf-8")
    assert (
        main(["mine", str(tmp_path / "missing_pool"), "--task-texts", str(task), "--output", str(tmp_path / "c.txt")])
        == 2
    )
    err = capsys.readouterr().err
    assert "missing_pool" in err and "not found" in err and "Traceback" not in err
    assert main(["mine", str(task), "--output", str(tmp_path / "c.txt")]) == 2
    assert "--task-texts" in capsys.readouterr().err
    assert main(["mine", str(task), "--task-texts", str(task), "--k", "0", "--output", str(tmp_path / "c.txt")]) == 2
    assert "--k" in capsys.readouterr().err
    assert not (tmp_path / "c.txt").exists()


def test_cli_mines_with_a_config_and_excludes_its_test_texts(tmp_path, tiny_bert, capsys):
    rows = [(f"profit rose in quarter {i} .", "positive") for i in range(12)]
    rows += [(f"sales fell in quarter {i} .", "negative") for i in range(12)]
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows[:16] + rows[12:20]), encoding="utf-8")
    test = tmp_path / "test.csv"
    test.write_text('text,label\n"Profit ROSE in quarter 11 .",positive\n', encoding="utf-8")
    val = tmp_path / "val.csv"
    val.write_text('text,label\n"sales fell in quarter 11 .",negative\n', encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model:\n  name: {tiny_bert}\ndata:\n  train: {train}\n  validation: {val}\n  test: {test}\n", encoding="utf-8"
    )
    pool = tmp_path / "pool.txt"
    pool.write_text(
        "profit rose in quarter 11 .\nsales fell in quarter 11 .\nthe weather is fine today .\n"
        "a cat sat on the mat .\nprofit rose in quarter 3 .\n",
        encoding="utf-8",
    )
    out = tmp_path / "mined" / "corpus.txt"
    code = main(
        ["mine", str(pool), "--config", str(config), "--model", str(tiny_bert), "--k", "2", "--output", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out.parent / "mining.json").read_text(encoding="utf-8"))
    assert report["excluded_as_leakage"] == 2 and report["task_texts"] == 20  # 24 rows, 4 duplicates
    corpus = out.read_text(encoding="utf-8").splitlines()
    assert "profit rose in quarter 11 ." not in corpus and "sales fell in quarter 11 ." not in corpus
    assert len(corpus) == report["selected"] == 3


def test_many_task_texts_are_scored_in_blocks_with_the_same_result(monkeypatch):
    import domainfit.mining.knn as mining

    embed = LookupEmbedder()
    queries, items = [f"task {i}" for i in range(50)], pool_of([f"pool {i}" for i in range(80)])
    results = []
    for block in (2048, 7):
        monkeypatch.setattr(mining, "_QUERY_BLOCK", block)
        miner = KnnMiner(embed(queries), 4, contrast_sample=100)
        for start in range(0, len(items), 30):
            chunk = miner.admit(items[start : start + 30])
            miner.add(chunk, embed([t.text for t in chunk]))
        results.append((miner.top_index.copy(), miner.top_scores.copy(), sorted(miner.contrast)))
    assert np.array_equal(results[0][0], results[1][0]) and np.allclose(results[0][1], results[1][1])
    assert np.allclose(results[0][2], results[1][2])  # BLAS may round differently per block size


def test_cli_refuses_to_write_the_corpus_into_the_pool(tmp_path, capsys):
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "a.txt").write_text("some pool text\n", encoding="utf-8")
    task = tmp_path / "task.txt"
    task.write_text("a task text\n", encoding="utf-8")
    assert (
        main(
            [
                "mine",
                str(tmp_path / "pool"),
                "--task-texts",
                str(task),
                "--output",
                str(tmp_path / "pool" / "mined" / "corpus.txt"),
            ]
        )
        == 2
    )
    assert "inside the pool folder" in capsys.readouterr().err


def test_sentence_embedder_is_mean_pooled_unit_length_and_in_input_order(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from domainfit.models.embedding import SentenceEmbedder

    texts = ["a much longer sentence about operating profit and net sales .", "ok", "shares fell .", "x y z w"]
    batched = SentenceEmbedder(str(tiny_bert), batch_size=3)(texts)  # length-sorted, padded batches
    model, tokenizer = AutoModel.from_pretrained(tiny_bert).eval(), AutoTokenizer.from_pretrained(tiny_bert)
    with torch.inference_mode():
        for row, text in zip(batched, texts):
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]  # (seq, hidden), no padding
            expected = torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy()
            assert np.allclose(row, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-6)
