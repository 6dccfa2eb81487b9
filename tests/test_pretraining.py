"""Domain-adaptive pretraining: the lazy corpus stream and its resume position, a tiny `domainfit pretrain` run
(model/, metrics.json, resume after an interruption, the pooler carried over), `domainfit train` from the
adapted folder, and the joint task + MLM objective logging its parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from assets import build_tiny_bert, build_tiny_gpt2

from domainfit.config import RunConfig, load_pretrain_config
from domainfit.data.corpus import CorpusStream, StreamPosition, list_text_files, read_records, take_heldout
from domainfit.errors import ConfigError, DataError
from domainfit.tasks import load_run_config as load_config

REPO = Path(__file__).resolve().parents[1]


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


# --------------------------------------------------------------------------------------------------------
# The stream


def test_stream_reads_lazily(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "w", encoding="utf-8") as f:
        for i in range(200_000):
            f.write(f"sentence number {i} about quarterly operating profit\n")
    stream = CorpusStream([big], block=64, seed=0)
    texts = _take(iter(stream), 100)
    assert len(set(texts)) == 100
    assert 0 < stream.bytes_read < big.stat().st_size / 500  # two blocks read, not the file


@pytest.mark.parametrize("group_size", [None, 3])
def test_resume_position_gives_the_same_next_texts_across_blocks_files_and_epochs(tmp_path, group_size):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("".join(f"a{i}\n" for i in range(23)) + "\n\n", encoding="utf-8")
    (tmp_path / "corpus" / "b.jsonl").write_text(
        "".join(json.dumps({"text": f"b{i}"}) + "\n" for i in range(17)), encoding="utf-8"
    )
    files = list_text_files(tmp_path / "corpus")
    heldout, exclude = take_heldout(files, size=5, stride=4, fmt="auto", column="text", encoding="utf-8")
    assert heldout == ["a0", "a4", "a8", "a12", "a16"]
    stream = CorpusStream(files, block=7, seed=3, exclude=exclude, group_size=group_size)
    it = iter(stream)
    first_epoch = _take(it, 35)
    assert sorted(first_epoch) == sorted({f"a{i}" for i in range(23)} - set(heldout) | {f"b{i}" for i in range(17)})
    assert first_epoch[:7] != sorted(first_epoch[:7], key=lambda t: int(t[1:]))  # shuffled within blocks
    for consumed in (3, 7, 20, 34, 40):  # mid-block, block end, in file b, end of epoch 1, into epoch 2
        fresh = CorpusStream(files, block=7, seed=3, exclude=exclude, group_size=group_size)
        texts = iter(fresh)
        _take(texts, consumed)
        saved = json.loads(json.dumps(fresh.position.to_dict()))  # as a checkpoint's state.json holds it
        expected = _take(texts, 12)
        resumed = iter(
            CorpusStream(
                files, block=7, seed=3, exclude=exclude, position=StreamPosition(**saved), group_size=group_size
            )
        )
        assert _take(resumed, 12) == expected, consumed
    second_epoch = _take(it, 35)
    assert sorted(second_epoch) == sorted(first_epoch) and second_epoch != first_epoch  # reshuffled per epoch


def test_length_grouping_cuts_padding_and_keeps_every_text(tmp_path):
    rng = __import__("random").Random(0)
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join("w " * rng.randint(1, 60) + f"{i}\n" for i in range(512)), encoding="utf-8")

    def padded_length(group_size):
        texts = _take(iter(CorpusStream([corpus], block=256, seed=1, group_size=group_size)), 512)
        assert len(set(texts)) == 512  # still every text exactly once per epoch
        return sum(max(len(t) for t in texts[i : i + 16]) * 16 for i in range(0, 512, 16))

    assert padded_length(16) < 0.7 * padded_length(None)


def test_formats_and_errors(tmp_path):
    csv_file = tmp_path / "c.csv"
    csv_file.write_text('id,text\n1,"hello, world"\n2,second\n', encoding="utf-8")
    assert [t for _, _, t in read_records(csv_file)] == ["hello, world", "second"]
    array = tmp_path / "q.json"
    array.write_text(
        json.dumps([{"query": "散光能好吗"}, {"query": "丰胸的方法"}], ensure_ascii=False), encoding="utf-8"
    )
    assert [t for _, _, t in read_records(array, column="query")] == ["散光能好吗", "丰胸的方法"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        list(read_records(bad))
    with pytest.raises(DataError, match="no column 'body'"):
        list(read_records(csv_file, column="body"))
    with pytest.raises(DataError, match="not found"):
        list_text_files(tmp_path / "missing")


def test_pretrain_config_is_strict(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("corpus: {train: x.txt}\ntrain: {max_step: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="max_steps"):
        load_pretrain_config(path)
    with pytest.raises(ConfigError, match="masking.lexicon"):
        load_pretrain_config(None, ["corpus.train=x.txt", "masking.strategy=knowledge"])
    with pytest.raises(ConfigError, match="joint.corpus"):
        load_config(None, ["data.train=x.csv", "joint.enabled=true", "joint.use_task_texts=false"])


def test_shipped_pretraining_configs_load():
    configs = REPO / "src" / "domainfit" / "configs"
    for name in ("pretrain_phrasebank.yaml", "pretrain_kuake_e5.yaml"):
        cfg = load_pretrain_config(configs / name)
        assert cfg.corpus.train and cfg.output.dir
    cfg = load_config(configs / "phrasebank_joint_mlm.yaml")
    assert cfg.joint.enabled and cfg.joint.mlm_weight > 0


# --------------------------------------------------------------------------------------------------------
# A tiny pretraining run


def _pretrain_config(tmp_path: Path, model: Path, corpus: Path, out: Path, **train) -> Path:
    cfg = {
        "model": {"name": str(model), "max_length": 48},
        "corpus": {
            "train": str(corpus),
            "text_column": "text",
            "validation_size": 40,
            "validation_stride": 10,
            "shuffle_buffer": 64,
        },
        "train": {
            "max_steps": 6,
            "batch_size": 8,
            "learning_rate": 2e-3,
            "precision": "fp32",
            "eval_every": 3,
            "save_every": 2,
            "log_every": 2,
            "seed": 5,
            **train,
        },
        "output": {"dir": str(out)},
    }
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, phrasebank_split):
    from domainfit.cli import main

    tmp = tmp_path_factory.mktemp("pretrain")
    model = build_tiny_bert(tmp / "tiny-mlm", head="mlm", max_position_embeddings=128)
    out = tmp / "run"
    assert main(["pretrain", str(_pretrain_config(tmp, model, phrasebank_split / "train.csv", out))]) == 0
    return tmp, model, out


def test_pretrain_writes_model_metrics_and_lineage(pretrained, phrasebank_split):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, out = pretrained
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/domainfit.json",
        "metrics.json",
        "report.md",
        "run.json",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == "mlm" and metrics["head"]["new"] is False
    assert metrics["after"]["perplexity"] < metrics["before"]["perplexity"]
    assert metrics["before"]["tokens"] == metrics["after"]["tokens"] > 0  # same fixed masked positions
    assert [h["step"] for h in metrics["history"]] == [0, 3, 6]
    assert metrics["train"]["texts_seen"] == 6 * 8
    lineage = json.loads((out / "model/domainfit.json").read_text())
    corpus = lineage["corpus"][0]
    assert corpus["path"].endswith("train.csv") and corpus["bytes"] == (phrasebank_split / "train.csv").stat().st_size
    assert len(corpus["sha256"]) == 64 and lineage["steps"] == 6
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/mlm_loss", "validation/perplexity"} <= set(acc.Tags()["scalars"])
    assert "Perplexity changed by" in (out / "report.md").read_text()


def test_resume_after_interruption_matches_uninterrupted_run(pretrained, monkeypatch):
    from safetensors.torch import load_file

    from domainfit.training import pretrain as pretrain_module
    from domainfit.training.checkpoint import CheckpointManager

    tmp, model, out = pretrained
    corpus = json.loads((out / "model/domainfit.json").read_text())["corpus"][0]["path"]
    killed = tmp / "killed"
    cfg = load_pretrain_config(_pretrain_config(tmp, model, Path(corpus), killed))
    original_save = CheckpointManager.save

    def save_then_die(self, state, *args, **kwargs):
        path = original_save(self, state, *args, **kwargs)
        if state.step == 4:
            raise KeyboardInterrupt  # as if the process died right after the step-4 checkpoint
        return path

    monkeypatch.setattr(CheckpointManager, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain_module.pretrain(cfg)
    monkeypatch.setattr(CheckpointManager, "save", original_save)
    state = json.loads((killed / "checkpoints/step-0000004/state.json").read_text())
    assert state["step"] == 4 and state["stream"]["skip"] == 32 and not (killed / "metrics.json").exists()
    pretrain_module.pretrain(cfg, resume=True)
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert b["after"] == a["after"] and [h["loss"] for h in b["history"]] == [h["loss"] for h in a["history"]]
    wa, wb = load_file(str(out / "model/model.safetensors")), load_file(str(killed / "model/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_new_head_is_reported_warmed_up_and_pooler_carried_then_train_accepts_the_folder(tmp_path, phrasebank_split):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from domainfit.training import train
    from domainfit.training.pretrain import pretrain

    # like all-MiniLM-L6-v2: encoder + pooler, no MLM head
    base = build_tiny_bert(tmp_path / "bare", head="encoder", max_position_embeddings=128)
    out = tmp_path / "adapted"
    results = pretrain(
        load_pretrain_config(
            _pretrain_config(
                tmp_path, base, phrasebank_split / "train.csv", out, max_steps=2, eval_every=None, head_warmup_steps=2
            )
        )
    )
    assert results["head"]["new"] and any("transform" in k for k in results["head"]["missing"])
    assert (
        "Caveat" in (out / "report.md").read_text()
        and "head alone was trained for 2 steps" in (out / "report.md").read_text()
    )
    classifier = AutoModelForSequenceClassification.from_pretrained(out / "model", num_labels=3)
    pooler = load_file(str(base / "model.safetensors"))["pooler.dense.weight"]
    assert torch.equal(classifier.bert.pooler.dense.weight, pooler)  # the trained pooler, not a fresh one
    adapted = load_file(str(out / "model/model.safetensors"))
    assert torch.equal(
        classifier.bert.embeddings.word_embeddings.weight, adapted["bert.embeddings.word_embeddings.weight"]
    )
    cfg = load_config(
        None,
        [
            f"model.name={out / 'model'}",
            "model.max_length=48",
            f"data.train={phrasebank_split / 'train.csv'}",
            f"data.validation={phrasebank_split / 'val.csv'}",
            "data.max_train_samples=32",
            "train.epochs=1",
            "train.batch_size=16",
            "train.best_metric=loss",
            "train.precision=fp32",
            f"output.dir={tmp_path / 'finetuned'}",
        ],
    )
    metrics = train(cfg)
    assert metrics["train"]["samples_seen"] == 32 and (tmp_path / "finetuned/model/model.safetensors").is_file()


def test_decoder_gets_causal_lm_pretraining(tmp_path, phrasebank_split):
    from domainfit.training.pretrain import pretrain

    build_tiny_gpt2(tmp_path / "gpt")
    results = pretrain(
        load_pretrain_config(
            _pretrain_config(
                tmp_path,
                tmp_path / "gpt",
                phrasebank_split / "train.csv",
                tmp_path / "clm",
                max_steps=4,
                eval_every=None,
            )
        )
    )
    assert results["objective"] == "clm" and not results["head"]["new"]
    assert results["after"]["perplexity"] < results["before"]["perplexity"]
    assert results["masking"] is None


# --------------------------------------------------------------------------------------------------------
# The joint objective


def test_joint_objective_logs_its_parts_and_evaluates_the_task_only(tmp_path, tiny_bert, phrasebank_split):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from domainfit.tasks import create_task
    from domainfit.training import train

    corpus = tmp_path / "domain.txt"
    corpus.write_text("Operating profit rose to EUR 13.1 mn .\nNet sales decreased by 5 % .\n" * 20, encoding="utf-8")
    overrides = [
        f"model.name={tiny_bert}",
        "model.max_length=48",
        f"data.train={phrasebank_split / 'train.csv'}",
        f"data.validation={phrasebank_split / 'val.csv'}",
        "data.max_train_samples=48",
        "train.epochs=1",
        "train.batch_size=16",
        "train.log_every=1",
        "train.best_metric=loss",
        "train.precision=fp32",
        "joint.enabled=true",
        f"joint.corpus={corpus}",
        "joint.mlm_weight=0.5",
        "joint.schedule=linear-decay",
        "joint.batch_size=4",
        f"output.dir={tmp_path / 'run'}",
    ]
    cfg: RunConfig = load_config(None, overrides)
    train(cfg)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    scalars = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert scalars["train/mlm_weight"] == pytest.approx([0.5, 0.5 * 2 / 3, 0.5 / 3])  # linear decay over 3 batches
    assert all(m > 5 for m in scalars["train/mlm_loss"])  # cross-entropy over a 30k vocabulary
    for total, task, mlm, lam in zip(
        scalars["train/loss"], scalars["train/task_loss"], scalars["train/mlm_loss"], scalars["train/mlm_weight"]
    ):
        assert total == pytest.approx(task + lam * mlm, rel=1e-4)

    # in evaluation the objective is the task objective; in training it adds the MLM part
    task = create_task(cfg.task)
    data = task.load_data(cfg)
    model, tokenizer = task.build(cfg, data)
    objective = task.create_objective(cfg, data)
    batch = task.collate(task.encode(data.splits["train"][:4], tokenizer, cfg, data).items, tokenizer)
    model.eval()
    assert set(objective(model, batch)) == set(objective.task_objective(model, batch))
    model.train()
    out = objective(model, batch)
    assert {"task_loss", "mlm_loss", "mlm_weight"} <= set(out) and out["mlm_loss"] > 0
    state = objective.state_dict()
    assert state["batches_done"] == 1 and state["stream_position"][-1] == 4  # 4 texts of the stream used
    params = {id(p) for p in objective.parameters()}
    assert id(model.get_input_embeddings().weight) not in params  # tied, but owned by the model only


def test_frozen_word_embeddings_keep_the_tied_decoder_fixed_in_pretraining(tmp_path, phrasebank_split):
    """model.freeze_embeddings in pretraining: word embeddings (and the MLM decoder tied to them) unchanged,
    encoder moved."""
    from safetensors.torch import load_file

    from domainfit.cli import main

    model = build_tiny_bert(tmp_path / "tiny-mlm", head="mlm", max_position_embeddings=128)
    out = tmp_path / "frozen"
    config = _pretrain_config(tmp_path, model, phrasebank_split / "train.csv", out, max_steps=2, eval_every=None)
    assert main(["pretrain", str(config), "model.freeze_embeddings=true"]) == 0
    before, after = load_file(model / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    word = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(before[word], after[word])
    assert not torch.equal(
        before["bert.encoder.layer.1.output.dense.weight"], after["bert.encoder.layer.1.output.dense.weight"]
    )
    assert not torch.equal(before["cls.predictions.bias"], after["cls.predictions.bias"])


def test_joint_head_warm_up_trains_the_head_alone_once(tmp_path, tiny_bert, phrasebank_split):
    """joint.head_warmup_steps: the head moves before the first step, the encoder does not, and only once."""
    from domainfit.tasks import create_task
    from domainfit.tasks import load_run_config as load_config

    corpus = tmp_path / "domain.txt"
    corpus.write_text(
        "".join(f"Operating profit rose to EUR {i} mn in the period .\n" for i in range(200)), encoding="utf-8"
    )
    cfg = load_config(
        None,
        [
            f"model.name={tiny_bert}",
            "model.max_length=48",
            f"data.train={phrasebank_split / 'train.csv'}",
            f"data.validation={phrasebank_split / 'val.csv'}",
            "data.max_train_samples=48",
            "joint.enabled=true",
            f"joint.corpus={corpus}",
            "joint.use_task_texts=false",
            "joint.batch_size=4",
            "joint.head_warmup_steps=5",
            f"output.dir={tmp_path / 'unused'}",
        ],
    )
    task = create_task(cfg.task)
    data = task.load_data(cfg)
    model, tokenizer = task.build(cfg, data)
    objective = task.create_objective(cfg, data)
    batch = task.collate(task.encode(data.splits["train"][:4], tokenizer, cfg, data).items, tokenizer)
    encoder = {k: v.clone() for k, v in model.state_dict().items()}
    head = {k: v.clone() for k, v in objective.head.state_dict().items()}
    model.train()
    objective(model, batch)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in encoder.items())  # encoder untouched
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(v, objective.head.state_dict()[k]) for k, v in head.items())  # head trained
    state = objective.state_dict()
    assert bool(state["head_warmed"]) and state["stream_position"][-1] == (5 + 1) * 4  # 5 warm-up batches + 1
    objective(model, batch)
    assert objective.state_dict()["stream_position"][-1] == 7 * 4  # no second warm-up
