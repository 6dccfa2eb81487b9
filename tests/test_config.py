"""Config: defaults < YAML < overrides, strict keys, typed values, every shipped config loads."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from domainfit.config import RunConfig, describe_fields, dump_yaml
from domainfit.errors import ConfigError
from domainfit.tasks import load_run_config as load_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(Path(str(resources.files("domainfit") / "configs")).glob("*.yaml")) + sorted(
    (REPO / "benchmarks").glob("*.yaml")
)


def test_there_are_shipped_configs():
    assert len(SHIPPED) >= 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_says_how_to_run_it(path):
    if path.name.startswith("pretrain_"):  # `domainfit pretrain` configs have their own schema
        from domainfit.config import load_pretrain_config

        assert load_pretrain_config(path).corpus.train
    elif path.name.startswith("tune_"):  # `domainfit tune` configs: a run config plus a search space
        from domainfit.tune import load_tune_config

        assert load_tune_config(path).space
    else:
        cfg = load_config(path)
        assert isinstance(cfg, RunConfig) and cfg.data.train
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert header and any("domainfit " in line for line in header), "open with a comment giving the command"


def test_precedence_defaults_yaml_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.csv\ntrain:\n  epochs: 5\n  learning_rate: 3e-5\n")
    cfg = load_config(path, ["train.epochs=7", "output.dir=elsewhere"])
    assert cfg.train.epochs == 7  # override beats YAML
    assert cfg.train.learning_rate == 3e-5  # YAML's "3e-5" (a string to YAML) is read as a number
    assert cfg.train.batch_size == RunConfig().train.batch_size  # default kept
    assert cfg.output.dir == "elsewhere"


def test_resolved_config_round_trips(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.csv\ntrain:\n  eval_every: 50\n")
    cfg = load_config(path)
    again = tmp_path / "again.yaml"
    again.write_text(dump_yaml(cfg))
    assert load_config(again) == cfg
    assert yaml.safe_load(dump_yaml(cfg))["train"]["eval_every"] == 50


def test_eval_every_takes_epoch_or_a_count(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.csv\n")
    assert load_config(path).train.eval_every == "epoch"
    with pytest.raises(ConfigError, match="train.eval_every"):
        load_config(path, ["train.eval_every=sometimes"])


def test_every_field_is_documented():
    rows = describe_fields()
    assert len(rows) > 30
    assert all(help.strip() for _, _, help in rows)


def test_paths_relative_to_the_config_file_are_found(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.csv").write_text("text,label\na,b\n")
    cfg_path = tmp_path / "sub" / "c.yaml"
    cfg_path.write_text("data:\n  train: train.csv\n")
    assert Path(load_config(cfg_path).data.train) == tmp_path / "sub" / "train.csv"


def test_tasks_and_models_commands_list_the_registered_names(capsys):
    from domainfit.cli import main
    from domainfit.tasks import TASKS

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TASKS.names()) and len(TASKS.names()) >= 5
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "minilm" in out and "efficientnet-lite0" in out and "smollm2" in out


def test_freezing_embeddings_of_an_image_model_is_refused(tmp_path):
    path = tmp_path / "img.yaml"
    path.write_text("task: image-classification\ndata:\n  train: images/\n")
    with pytest.raises(ConfigError, match="model.freeze_embeddings"):
        load_config(path, ["model.freeze_embeddings=true"])


# --------------------------------------------------------------------------------------------------------
# Hardening: numbers, duplicate keys, alias bombs, long values in messages


def _config(tmp_path, text="data:\n  train: x.csv\n"):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("train.learning_rate=[", "train.learning_rate", "not valid YAML"),
        ("train.epochs=.inf", "train.epochs", "invalid value inf"),
        ("train.learning_rate=nan", "train.learning_rate", "not a finite number"),
        ("train.learning_rate=.nan", "train.learning_rate", "not a finite number"),
        ("train.learning_rate=1e999", "train.learning_rate", "not a finite number"),
        ("train.max_grad_norm=.inf", "train.max_grad_norm", "not a finite number"),
        ("regularization.class_weights={a: 1, b: .nan}", "regularization.class_weights", "not a finite number"),
        ("train.seed=-1", "train.seed", "must be >= 0"),
        ("train.seed=99999999999999999999", "train.seed", "must be <= 4294967295"),
        ("data.split_seed=4294967296", "data.split_seed", "must be <= 4294967295"),
        ("train.epochs=1" + "0" * 30, "train.epochs", "must be <= 2147483647"),
        ("train.learning_rate=1" + "0" * 400, "train.learning_rate", "invalid value"),
        ("train.seed=" + "1" * 5000, "train.seed", "as int"),  # longer than Python converts by default
        ("model.name=2021-13-45", "model.name", "as timestamp"),  # a date YAML cannot build
    ],
)
def test_bad_numbers_in_overrides_name_the_key(tmp_path, capsys, override, key, expected):
    from domainfit.cli import main

    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        load_config(_config(tmp_path), [override])
    assert key in str(info.value)
    assert main(["train", str(_config(tmp_path)), override]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err and len(err) < 1000


def test_seeds_take_the_whole_numpy_range(tmp_path):
    cfg = load_config(_config(tmp_path), ["train.seed=4294967295", "data.split_seed=0", "data.sample_seed=7"])
    assert (cfg.train.seed, cfg.data.split_seed, cfg.data.sample_seed) == (2**32 - 1, 0, 7)


def test_pretrain_seed_and_numbers_are_checked_the_same_way(tmp_path):
    from domainfit.config import load_pretrain_config

    path = _config(tmp_path, "corpus:\n  train: texts.txt\n")
    with pytest.raises(ConfigError, match="train.seed"):
        load_pretrain_config(path, ["train.seed=-5"])
    with pytest.raises(ConfigError, match="train.learning_rate"):
        load_pretrain_config(path, ["train.learning_rate=nan"])


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("data:\n  train: x.csv\ntrain:\n  epochs: 2\noutput:\n  dir: o\ntrain:\n  seed: 3\n", "'train'", (3, 7)),
        ("data:\n  train: x.csv\ntrain:\n  epochs: 2\n  batch_size: 8\n  epochs: 4\n", "'epochs'", (4, 6)),
    ],
)
def test_a_key_given_twice_is_refused_with_both_lines(tmp_path, capsys, text, key, lines):
    from domainfit.cli import main

    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert key in message and f"line {lines[0]}" in message and f"line {lines[1]}" in message
    assert str(path) in message
    assert main(["train", str(path)]) == 2
    assert "given twice" in capsys.readouterr().err


def test_duplicate_keys_are_refused_in_pretrain_and_pipeline_configs(tmp_path):
    from domainfit.config import load_pretrain_config
    from domainfit.pipeline import load_pipeline_config

    pretrain = _config(tmp_path, "corpus:\n  train: a.txt\n  train: b.txt\n")
    with pytest.raises(ConfigError, match=r"'train' is given twice, on line 2 and on line 3"):
        load_pretrain_config(pretrain)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"finetune: {_config(tmp_path)}\noutput_dir: o\nseeds: [1]\nseeds: [2, 3]\n")
    with pytest.raises(ConfigError, match=r"'seeds' is given twice, on line 3 and on line 4"):
        load_pipeline_config(pipeline)


def test_small_aliases_and_merge_keys_still_work(tmp_path):
    from domainfit.config.yaml_files import parse_yaml

    cfg = load_config(_config(tmp_path, "data:\n  train: x.csv\ntrain:\n  epochs: &n 2\n  log_every: *n\n"))
    assert cfg.train.epochs == cfg.train.log_every == 2
    # an explicit key overriding a merged one is not a duplicate
    assert parse_yaml("a: &d {p: 1, q: 2}\nb:\n  <<: *d\n  p: 3\n")["b"] == {"p": 3, "q": 2}


BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


def test_a_billion_laughs_config_is_refused_without_expanding_it(tmp_path):
    """9**9 (387 million) strings under model.name: refused before anything walks it. Run in a child with
    2 GB of address space, so the code before this fix (which printed the expansion) fails with MemoryError
    instead of taking the machine's memory."""
    import resource
    import subprocess
    import sys

    path = _config(tmp_path, 'l0: &l0 "lol"\n' + BOMB + "model:\n  name: *l9\n")

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    run = subprocess.run(
        [sys.executable, "-m", "domainfit", "train", str(path)],
        check=False,
        capture_output=True,
        text=True,
        preexec_fn=limit_memory,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and len(run.stderr) < 1000
    assert "'model.name'" in run.stderr and "expand to more than" in run.stderr


def test_a_long_value_is_cut_in_the_message(tmp_path):
    # about 66,000 strings (9**5 + 9**4 + ...): under the alias limit, so the value reaches the schema,
    # whose message echoes it (half a megabyte before the cap)
    levels = "".join(f"    - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 6))
    path = _config(tmp_path, "data:\n  train: x.csv\nmodel:\n  name:\n    - &l0 lol\n" + levels)
    with pytest.raises(ConfigError, match="model.name") as info:
        load_config(path)
    assert len(str(info.value)) < 1000 and "invalid value ['lol', [" in str(info.value)


def test_short_repr_and_the_message_cap():
    from domainfit.errors import MAX_MESSAGE_CHARS, DomainfitError, short_repr

    assert len(short_repr("x" * 10**6)) <= 200 and short_repr("abc") == "'abc'"
    nested = [[["deep"] * 10**5] * 10**3]  # a repr of a billion characters, if it were built
    assert len(short_repr(nested, limit=50)) <= 50
    error = DomainfitError("bad value " + "y" * 10**6, key="model.name", fix="use a shorter one.")
    assert len(str(error)) == MAX_MESSAGE_CHARS
    assert str(error).startswith("key 'model.name': bad value yyy")
    assert str(error).endswith("How to fix: use a shorter one.") and "characters cut" in str(error)


def test_max_length_beyond_the_models_positions_is_refused_before_the_run_starts(tmp_path, tiny_bert, capsys):
    from domainfit.cli import main

    rows = [
        (f"{text} number {i}", label)
        for i in range(12)
        for text, label in (("Profit rose", "positive"), ("Sales fell", "negative"), ("A meeting", "neutral"))
    ]
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    out = tmp_path / "out"
    path = _config(
        tmp_path, f"model:\n  name: {tiny_bert}\ndata:\n  train: {train}\ntrain:\n  epochs: 1\noutput:\n  dir: {out}\n"
    )
    assert main(["train", str(path), "model.max_length=100000"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "model.max_length" in err and "at most 512" in err
    assert not out.exists(), "nothing may be written for a run refused on bad input"


def test_position_limit_knows_roberta_style_offsets():
    from transformers import BertConfig, GPT2Config, XLMRobertaConfig

    from domainfit.models.loading import check_max_length, position_limit

    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512  # e5, XLM-R
    assert position_limit(GPT2Config(n_positions=1024)) == 1024
    assert position_limit(None) is None  # a model without a transformers config (EfficientNet-Lite0)
    check_max_length(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1), 512)
    with pytest.raises(ConfigError, match="model.max_length.*at most 512"):
        check_max_length(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1), 513)


def test_pretrain_refuses_max_length_beyond_the_models_positions(tmp_path, tiny_bert, capsys):
    from domainfit.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"Quarterly sales rose {i} percent .\n" for i in range(60)), encoding="utf-8")
    out = tmp_path / "out"
    path = _config(
        tmp_path,
        f"model:\n  name: {tiny_bert}\n  max_length: 4096\ncorpus:\n  train: {corpus}\n"
        f"  validation_size: 5\ntrain:\n  max_steps: 1\noutput:\n  dir: {out}\n",
    )
    assert main(["pretrain", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "model.max_length" in err and "at most 512" in err
    assert not out.exists()


# --------------------------------------------------------------------------------------------------------
# Every fix an error prints names real config keys


SECTIONS = (
    "model",
    "data",
    "train",
    "output",
    "multi_label",
    "generation",
    "ner",
    "image",
    "joint",
    "augment",
    "peft",
    "regularization",
    "corpus",
    "masking",
)
# `data.train: x.csv` or `set data.stratify: false`; not file names such as model.safetensors
DOTTED_KEY = re.compile(rf"(?<![\w./-])((?:{'|'.join(SECTIONS)})(?:\.[a-z0-9_]+)+)(?![\w/-]|\.\w)")
# `key: value` as it would be written in a YAML file
KEY_VALUE = re.compile(r"(?<![\w./-])([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*): +(['\"`]?)([A-Za-z0-9_.-]+)")
FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".jsonl", ".yaml", ".csv", ".tsv", ".txt", ".md", ".onnx")


def _literal_texts(node, names: dict) -> list[str]:
    """The literal text of a fix= expression; an f-string's placeholders become a NUL, a name its assignments."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [
            a + b
            for a in _literal_texts(node.left, names) or ["\0"]
            for b in _literal_texts(node.right, names) or ["\0"]
        ]
    if isinstance(node, ast.IfExp):
        return _literal_texts(node.body, names) + _literal_texts(node.orelse, names)
    if isinstance(node, ast.Name):
        return [text for value in names.get(node.id, []) for text in _literal_texts(value, names)]
    return []


def _product_fixes() -> list[tuple[str, str]]:
    """(where, text) of every `fix=` string in the package, and of every field's help (printed as a fix)."""
    import ast

    from domainfit.config import PretrainConfig

    fixes = []
    for path in sorted(Path(str(resources.files("domainfit"))).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: dict = {}
        for node in ast.walk(tree):  # `fix = ...` before `fix=fix`, module constants such as _RARE_CLASS_FIX
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, []).append(node.value)
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "fix":
                fixes += [(f"{path.name}:{node.value.lineno}", text) for text in _literal_texts(node.value, names)]
    for cls in (RunConfig, PretrainConfig):
        fixes += [(f"help of {key}", help) for key, _, help in describe_fields(cls)]
    return fixes


def _schema():
    """{dotted key: dataclass field} of the run, pretrain and federate configs, and {leaf name: [fields]}."""
    import dataclasses
    import typing

    from domainfit.config import PretrainConfig

    fields, leaves = {}, {}

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            fields[prefix + f.name] = (f, hints[f.name])
            leaves.setdefault(f.name, []).append((f, hints[f.name]))
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")

    from domainfit.config.federate import FederateConfig

    walk(RunConfig, "")
    walk(PretrainConfig, "")
    walk(FederateConfig, "")
    return fields, leaves


def _value_fits(value: str, candidates) -> bool:
    """A plain word given as the value of a field with choices (or a boolean) must be one it accepts."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value):
        return True  # numbers, paths, examples: not checked here
    for f, hint in candidates:
        if "choices" in f.metadata:
            if value in f.metadata["choices"]:
                return True
        elif hint is bool or hint == bool | None:
            if value in ("true", "false", "null"):
                return True
        else:
            return True  # a free-text or registered-name field
    return False


def test_every_fix_names_real_config_keys():
    from domainfit.pipeline import _TOP_KEYS

    fields, leaves = _schema()
    fixes = _product_fixes()
    assert len(fixes) > 200  # the scan found the fixes
    wrong = []
    for where, text in fixes:
        for match in DOTTED_KEY.finditer(text):
            key = match.group(1)
            if key not in fields and not key.endswith(FILE_SUFFIXES):
                wrong.append(f"{where}: unknown key {key!r} in {text!r}")
        for match in KEY_VALUE.finditer(text):
            key, quote, value = match.groups()
            value = value.rstrip(".")  # (help texts are prose: "with group_by_length: size batches ...")
            if "." in key:
                candidates = [fields[key]] if key in fields else None
            elif "_" in key or key in leaves:  # a snake_case word before a colon is meant as a key
                candidates = leaves.get(key, [])
                if key in _TOP_KEYS:
                    continue  # a pipeline config key
            else:
                continue  # English: "one of: a, b"
            if not candidates:
                wrong.append(f"{where}: unknown key {key!r} in {text!r}")
            elif not quote and not where.startswith("help") and not _value_fits(value, candidates):
                wrong.append(f"{where}: {key!r} does not take {value!r} in {text!r}")
    assert not wrong, "\n".join(wrong)


def test_the_fix_check_catches_a_wrong_key():
    fields, leaves = _schema()
    text = "for unlabelled data set `require_labels: false`, or data.require_labels: false"
    assert [m.group(1) for m in KEY_VALUE.finditer(text)] == ["require_labels", "data.require_labels"]
    assert "require_labels" not in leaves and "data.require_labels" not in fields
    assert not _value_fits("maybe", leaves["stratify"]) and _value_fits("windows", leaves["long_text"])
