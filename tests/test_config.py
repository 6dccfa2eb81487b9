"""Config: defaults < YAML < overrides, strict keys, typed values, every shipped config loads."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from domainfit.config import RunConfig, describe_fields, dump_yaml, load_config
from domainfit.errors import ConfigError

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
