"""Property tests of config loading: whatever a config file or override holds, the result is a config or one
DomainfitError (exit 2, one message), never another exception (a traceback).

Random YAML documents shaped like configs (real section and key names, values of every YAML type), random
``key=value`` overrides, and random text and bytes as the config file.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domainfit.config import PretrainConfig, RunConfig, load_config, load_pretrain_config
from domainfit.errors import DomainfitError
from domainfit.pipeline import load_pipeline_config

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


RUN_KEYS = _keys(RunConfig)
PRETRAIN_KEYS = _keys(PretrainConfig)

# values a user might write, and the edge cases of each YAML type
TRICKY = [
    "auto",
    "epoch",
    "none",
    "lora",
    "windows",
    "fp32",
    "x.csv",
    "text-classification",
    "1e-5",
    "nan",
    "-1",
    "",
    "0",
    "0x10",
    "2001-01-01",
    "~",
    "yes",
    "a" * 300,
    "a\0b",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(TRICKY)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


def _documents(keys: list[str]) -> st.SearchStrategy[dict]:
    """Nested mappings built from real dotted keys (some mistyped) with random values."""
    key = st.sampled_from(keys) | st.text(min_size=1, max_size=12)
    return st.dictionaries(key, values, max_size=8).map(_nest)


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for dotted, value in flat.items():
        node, parts = tree, str(dotted).split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return tree


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("configs")


def _loads_or_refuses(load, *args) -> None:
    try:
        load(*args)
    except DomainfitError as e:
        assert str(e).strip()  # one message, never empty


@SETTINGS
@given(document=_documents(RUN_KEYS), with_train=st.booleans())
@example(document={"data": {"train": "a" * 300}}, with_train=True)  # longer than a file name may be: OSError
@example(document={"train": {"seed": -1, "learning_rate": float("nan")}}, with_train=True)
def test_random_run_config_documents(folder, document, with_train):
    if with_train and isinstance(document.get("data", {}), dict):
        document.setdefault("data", {}).setdefault("train", "x.csv")
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _loads_or_refuses(load_config, path)


@SETTINGS
@given(document=_documents(PRETRAIN_KEYS))
@example(document={"corpus": {"train": "b" * 300}})
def test_random_pretrain_config_documents(folder, document):
    path = folder / "pretrain.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _loads_or_refuses(load_pretrain_config, path)


PIPELINE_KEYS = [
    "finetune",
    "finetune_overrides",
    "pretrain",
    "pretrain.p.config",
    "pretrain.p.overrides",
    "variants",
    "variants.v.pretrain",
    "variants.v.overrides",
    "seeds",
    "baseline",
    "output_dir",
]


@SETTINGS
@given(document=_documents(PIPELINE_KEYS), finetune=st.booleans(), overrides=st.lists(st.text(max_size=20), max_size=2))
@example(document={"output_dir": "o", "pretrain": [1]}, finetune=True, overrides=[])  # .items() of a list
@example(
    document={"output_dir": "o", "variants": {"v": {"pretrain": [1]}}}, finetune=True, overrides=[]
)  # an unhashable stage name
@example(document={"output_dir": "o", "seeds": [-1]}, finetune=True, overrides=[])
@example(document={"output_dir": "o", "finetune": "c" * 300}, finetune=False, overrides=[])
def test_random_pipeline_config_documents(folder, document, finetune, overrides):
    run = folder / "finetune.yaml"
    run.write_text("data:\n  train: x.csv\n", encoding="utf-8")
    if finetune:
        document["finetune"] = str(run)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _loads_or_refuses(load_pipeline_config, path, overrides)


@SETTINGS
@given(
    key=st.sampled_from(RUN_KEYS) | st.text(max_size=20),
    value=st.text(max_size=40),
    typed=scalars.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("...\n").strip()),
)
def test_random_overrides(folder, key, value, typed):
    path = folder / "base.yaml"
    path.write_text("data:\n  train: x.csv\n", encoding="utf-8")
    _loads_or_refuses(load_config, path, [f"{key}={value}"])
    _loads_or_refuses(load_config, path, [f"{key}={typed}"])


@SETTINGS
@given(
    text=st.text(max_size=200)
    | st.sampled_from(
        [
            "[" * 5000,
            "a: &a [*a]",
            "a: !!python/object:os.system x",
            "a: 1\na: 2",
            "? [a, b]\n: c",
            "- 1\n- 2",
            "!!binary x",
            "a: 2001-13-45",
            "a: " + "9" * 5000,
        ]
    )
)
def test_random_text_as_a_config_file(folder, text):
    path = folder / "text.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _loads_or_refuses(load_config, path)
    _loads_or_refuses(load_pretrain_config, path)
    _loads_or_refuses(load_pipeline_config, path)


@SETTINGS
@given(data=st.binary(max_size=300))
@example(data=b"?")  # {None: None}: a null key among the pipeline's unknown keys
def test_random_bytes_as_a_config_file(folder, data):
    path = folder / "bytes.yaml"
    path.write_bytes(data)
    _loads_or_refuses(load_config, path)
    _loads_or_refuses(load_pipeline_config, path)
