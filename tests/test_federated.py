"""domainfit federate: FedAvg's weighted average, FedProx's term, the bytes exchanged, an end-to-end
simulation of three PhraseBank sites on a tiny model, DP-SGD's epsilon, and bad federate keys refused."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from domainfit.federated.exchange import full_weights_bytes, load_trained_state, trained_state
from domainfit.objectives.fedprox import ProximalObjective

LABELS = ("negative", "neutral", "positive")


class _MeanLoss(nn.Module):
    """A base objective whose loss is the mean output: its gradient is known."""

    def forward(self, model, batch):
        logits = model(batch["x"])
        return {"loss": logits.mean(), "logits": logits.detach()}


def test_fedprox_adds_mu_half_squared_distance_to_the_anchor():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    batch = {"x": torch.randn(4, 3)}
    objective = ProximalObjective(_MeanLoss(), mu=0.5)
    objective.anchor(model)
    with torch.no_grad():
        model.weight += 0.1  # moved 6 entries by 0.1: ||w - w_global||^2 = 0.06
    base = _MeanLoss()(model, batch)["loss"]
    out = objective(model, batch)
    assert float(out["proximal_loss"]) == pytest.approx(0.06, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(float(base.detach()) + 0.5 / 2 * 0.06, rel=1e-5)
    out["loss"].backward()  # the term's gradient is mu * (w - w_global) on top of the base gradient
    base_grad = torch.autograd.grad(_MeanLoss()(model, batch)["loss"], model.weight)[0]
    assert torch.allclose(model.weight.grad, base_grad + 0.5 * 0.1, atol=1e-6)
    model.eval()
    assert "proximal_loss" not in objective(model, batch)  # evaluation scores the task loss alone


def test_exchanged_state_is_the_trained_weights_and_full_bytes_count_everything():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].requires_grad_(False)  # frozen, as the base weights under LoRA
    state = trained_state(model)
    assert list(state) == ["1.weight", "1.bias"]
    assert full_weights_bytes(model) == (4 * 3 + 3 + 3 * 2 + 2) * 4  # fp32, frozen weights included
    other = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    other[0].requires_grad_(False)
    load_trained_state(other, state)
    assert torch.equal(other[1].weight, model[1].weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_trained_state(other, {"1.weight": state["1.weight"]})


def _lora_model(seed: int) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    return get_peft_model(base, LoraConfig(r=2, target_modules=["0"], modules_to_save=["2"]))


def test_ffa_lora_freezes_a_so_the_average_of_b_is_the_average_of_the_updates():
    pytest.importorskip("peft")
    from domainfit.errors import ConfigError, DomainfitError
    from domainfit.federated.exchange import check_frozen_digest, freeze_lora_a, frozen_digest

    sites = [_lora_model(seed=3) for _ in range(2)]
    for model in sites:
        assert freeze_lora_a(model) == 2 * 6  # A of the one target: r x in_features
        names = list(trained_state(model))
        assert names and not any("lora_A" in n for n in names) and any("lora_B" in n for n in names)
    a = dict(sites[0].named_parameters())
    a_name = next(n for n in a if "lora_A" in n)
    b_name = a_name.replace("lora_A", "lora_B")
    with torch.no_grad():  # two sites' local training: different B, the same frozen A
        for i, model in enumerate(sites):
            dict(model.named_parameters())[b_name].copy_(torch.randn(5, 2, generator=torch.Generator().manual_seed(i)))
    params = [dict(m.named_parameters()) for m in sites]
    mean_b = (params[0][b_name] + params[1][b_name]) / 2
    updates = [p[b_name] @ p[a_name] for p in params]
    assert torch.allclose(mean_b @ params[0][a_name], (updates[0] + updates[1]) / 2, atol=1e-6)  # exact

    assert frozen_digest(sites[0]) == frozen_digest(sites[1])
    other = _lora_model(seed=4)  # a site built from another seed: another A
    freeze_lora_a(other)
    with pytest.raises(DomainfitError, match=r"site s2: its frozen LoRA A matrices .* are not the server's"):
        check_frozen_digest(other, frozen_digest(sites[0]), "s2")
    check_frozen_digest(other, None, "s2")  # a server that froze nothing sends no digest
    with pytest.raises(ConfigError, match="needs LoRA matrices"):
        freeze_lora_a(nn.Linear(2, 2))


def test_the_pooled_held_out_split_counts_a_shared_test_file_once(tmp_path):
    from types import SimpleNamespace

    from domainfit.federated.site import pooled_features
    from domainfit.tasks.base import Features

    def site(test_file, n):
        data = SimpleNamespace(test=str(test_file) if test_file else None, validation=None)
        features = Features(items=[{"id": i} for i in range(n)], lengths=[1] * n)
        return SimpleNamespace(cfg=SimpleNamespace(data=data), held_out="test", features={"test": features})

    shared = tmp_path / "test.csv"
    sites = [site(shared, 5), site(tmp_path / "." / "test.csv", 5), site(None, 3), site(None, 2)]
    assert len(pooled_features(sites)) == 5 + 3 + 2  # the shared file once; each own split


def test_fedavg_weights_each_site_by_its_examples():
    pytest.importorskip("flwr")
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

    from domainfit.config.federate import FederateConfig
    from domainfit.federated.apps import RoundLog, create_strategy

    fed = FederateConfig(sites={"a": "a.csv", "b": "b.csv"})
    log = RoundLog()
    strategy = create_strategy(fed, log)
    replies = []
    for name, value, n in (("a", 1.0, 1), ("b", 5.0, 3)):
        sent = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), 1, "train")
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": torch.full((2, 2), value)}),
                "metrics": MetricRecord({"num-examples": n, "train_loss": value}),
                "site": ConfigRecord({"name": name}),
            }
        )
        replies.append(Message(content, reply_to=sent))
    log.current_round = 1
    arrays, metrics = strategy.aggregate_train(1, replies)
    averaged = arrays.to_torch_state_dict()["w"]
    assert torch.allclose(averaged, torch.full((2, 2), (1 * 1.0 + 3 * 5.0) / 4))  # 4.0, not the plain mean 3.0
    assert metrics["train_loss"] == pytest.approx(4.0)
    assert log.sites_train[1] == {
        "a": {"num-examples": 1.0, "train_loss": 1.0},
        "b": {"num-examples": 3.0, "train_loss": 5.0},
    }


def _rates(start_step: int, steps: int, total: int) -> list[float]:
    from domainfit.config import TrainConfig
    from domainfit.training.optim import create_scheduler

    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = create_scheduler(optimizer, TrainConfig(warmup_ratio=0.2), total, start_step=start_step)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_rounds_run_consecutive_shares_of_one_learning_rate_schedule():
    whole = _rates(0, 30, 30)  # transformers' linear warm-up and decay over 30 steps
    assert _rates(0, 10, 30) + _rates(10, 10, 30) + _rates(20, 10, 30) == pytest.approx(whole)
    assert whole[0] == 0 and max(whole) == pytest.approx(1.0) and whole[-1] > 0
    # a schedule restarted every round (the old behaviour) warms up three times and decays to zero three times
    assert _rates(0, 10, 10) * 3 != pytest.approx(whole)


class _RecordingSite:
    """Stands in for a Site to see what a train message makes it do."""

    name, num_train = "a", 5

    def __init__(self):
        self.calls = []

    def fit(self, model, epochs, device, **schedule):
        self.calls.append((epochs, schedule))
        return {"train_loss": 1.0}


def test_a_site_follows_the_server_round_of_the_federation_schedule():
    pytest.importorskip("flwr")
    from flwr.app import ConfigRecord, Message, RecordDict

    from domainfit.federated.apps import train_handler
    from domainfit.federated.exchange import to_record

    model = nn.Linear(2, 2)
    site = _RecordingSite()
    handle = train_handler(site, model, torch.device("cpu"))
    for config in (
        {"local-epochs": 2, "server-round": 3, "num-rounds": 5},
        {"local-epochs": 1},  # a server that names no rounds: one schedule per round, as before
    ):
        content = RecordDict({"arrays": to_record(trained_state(model)), "config": ConfigRecord(config)})
        handle(Message(content, 1, "train"))
    assert site.calls == [(2, {"round_index": 2, "num_rounds": 5}), (1, {"round_index": 0, "num_rounds": 1})]


def _write_sites(split: Path, out: Path, n_sites: int = 3, per_site: int = 40) -> list[Path]:
    """Label-skewed site files: site i gets mostly label i and some of the others, ``per_site`` rows each."""
    with (split / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label = {label: [r for r in rows if r["label"] == label] for label in LABELS}
    files = []
    for i in range(n_sites):
        main, others = LABELS[i % 3], [label for label in LABELS if label != LABELS[i % 3]]
        picked = by_label[main][i * 24 : (i + 1) * 24] + [r for o in others for r in by_label[o][i * 8 : (i + 1) * 8]]
        path = out / f"site{i}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in picked[:per_site])
        files.append(path)
    return files


def _federate_config(tmp_path: Path, tiny_bert: Path, sites: list[Path], extra: str = "") -> Path:
    run = tmp_path / "run.yaml"
    run.write_text(
        f"model:\n  name: {tiny_bert}\n  max_length: 64\n"
        "data:\n  validation_fraction: 0.2\n  test_fraction: 0.2\n"
        "train:\n  batch_size: 8\n  learning_rate: 1.0e-3\n  num_threads: 1\n  seed: 1\n"
        "peft:\n  method: lora\n  r: 4\n  target_modules: query,value\n",
        encoding="utf-8",
    )
    fed = tmp_path / "federate.yaml"
    site_lines = "".join(f"  site{i}: {p}\n" for i, p in enumerate(sites))
    fed.write_text(
        f"run_config: run.yaml\nsites:\n{site_lines}rounds: 2\nlocal_epochs: 1\n"
        f"output_dir: {tmp_path / 'fed'}\n{extra}",
        encoding="utf-8",
    )
    return fed


def test_sites_with_skewed_labels_are_warned_about_without_class_weights(caplog):
    pytest.importorskip("flwr")
    from domainfit.data.records import Example
    from domainfit.federated.simulation import warn_on_label_skew
    from domainfit.tasks import TaskData

    def site(labels: str) -> TaskData:
        return TaskData(
            splits={"train": [Example(f"t{i}", x, i + 2) for i, x in enumerate(labels)]}, labels=[], info={}
        )

    even = {"a": site("pnpnpn"), "b": site("npnpnp")}
    skewed = {"a": site("pppppn"), "b": site("nnnnnp")}  # 83% one label at each site, 50% over both

    assert warn_on_label_skew(even, "none") == []
    assert warn_on_label_skew(skewed, "balanced") == []  # the remedy is on: nothing to say
    with caplog.at_level("WARNING"):
        assert warn_on_label_skew(skewed, "none") == ["a", "b"]
    assert "site a: its labels differ" in caplog.text and "class_weights: balanced" in caplog.text


def test_the_server_keeps_the_round_best_on_the_sites_weighted_validation_scores():
    from domainfit.errors import ConfigError
    from domainfit.federated.selection import RoundSelection, validation_metrics

    def sites(a: float, b: float, loss: float = 1.0) -> dict[str, dict[str, float]]:
        # site a scores on 100 validation examples, b on 300; the held-out (test) score says the opposite
        return {
            "a": {"f1_macro": 1 - a, **validation_metrics({"f1_macro": a, "loss": loss}, 100)},
            "b": {"f1_macro": 1 - b, **validation_metrics({"f1_macro": b, "loss": loss}, 300)},
        }

    selection = RoundSelection("f1_macro")
    assert selection.observe(1, sites(0.2, 0.6), "arrays 1")
    assert selection.validation[1]["f1_macro"] == pytest.approx(0.5)  # (0.2 * 100 + 0.6 * 300) / 400
    assert selection.observe(2, sites(0.9, 0.5), "arrays 2")  # 0.6: better although b got worse
    assert not selection.observe(3, sites(0.0, 0.7), "arrays 3")  # 0.525
    assert selection.observe(4, sites(0.6, 0.6, loss=0.5), "arrays 4")  # a tie goes to the lower loss
    assert (selection.round, selection.arrays) == (4, "arrays 4")
    assert selection.summary(5)["kept_round"] == 4

    lower = RoundSelection("loss")
    lower.observe(1, sites(0.5, 0.5, loss=0.9), 1)
    lower.observe(2, sites(0.1, 0.1, loss=0.4), 2)
    assert lower.round == 2  # loss is minimised

    blind = RoundSelection("f1_macro")
    assert not blind.observe(1, {"a": {"f1_macro": 0.9}}, "arrays")  # no validation split: nothing chosen
    assert blind.summary(3) == {"kept_round": 3, "by": "last round", "why": blind.unavailable}
    assert "site(s) a have no validation split" in blind.unavailable

    with pytest.raises(ConfigError, match="train.best_metric 'f1_micro'"):
        RoundSelection("f1_micro").observe(1, sites(0.5, 0.5), "arrays")


def test_federate_simulates_three_sites_and_writes_the_run_folder(tmp_path, tiny_bert, phrasebank_split):
    pytest.importorskip("flwr")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="strategy: fedprox\nproximal_mu: 0.01\n")
    assert main(["federate", str(fed)]) == 0

    out = tmp_path / "fed"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["global"]) == {"0", "1", "2"}  # before training, then after each round
    assert set(metrics["sites_eval"]["2"]) == {"site0", "site1", "site2"}
    assert "f1_macro" in metrics["global"]["2"] and "train_loss" in metrics["sites_train"]["1"]["site0"]
    assert metrics["global"]["2"] != metrics["global"]["0"]  # the rounds changed the global model
    # LoRA + head travel, not the model: a small share, and each round's traffic is 3 sites x (send + reply)
    # for training plus 3 sends for evaluation, each carrying the exchanged tensors
    ex = metrics["exchanged"]
    assert 0 < ex["share_percent"] < 50
    for r in ("1", "2"):
        traffic = metrics["traffic"][r]
        assert traffic["messages"] == 9
        assert traffic["full_weights"] == 9 * ex["full_weights_bytes_per_message"]
        assert ex["bytes_per_message"] * 9 <= traffic["sent"] < traffic["full_weights"]
    assert (out / "model" / "config.json").is_file() and (out / "model" / "domainfit.json").is_file()
    assert json.loads((out / "model" / "config.json").read_text())["id2label"] == {
        "0": "negative",
        "1": "neutral",
        "2": "positive",
    }
    # the kept round is the best on the sites' validation splits (weighted), never chosen on the held-out ones
    validation = {int(r): m["f1_macro"] for r, m in metrics["global_validation"].items()}
    assert set(validation) == {1, 2}
    kept = metrics["selection"]["kept_round"]
    assert validation[kept] == max(validation.values()) and metrics["final"] == metrics["global"][str(kept)]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| round | global accuracy | global f1_macro" in report and "fedprox" in report
    assert "validation f1_macro |" in report and f"Kept: the model of round **{kept}**" in report
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_freeze_lora_a_exchanges_b_and_the_head_only(tmp_path, tiny_bert, phrasebank_split):
    pytest.importorskip("flwr")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    exchanged = {}
    for frozen in (False, True):
        fed = _federate_config(
            tmp_path, tiny_bert, sites, extra=f"rounds: 1\nfreeze_lora_a: {str(frozen).lower()}\noverwrite: true\n"
        )
        fed.write_text(fed.read_text().replace("rounds: 2\n", ""), encoding="utf-8")
        assert main(["federate", str(fed)]) == 0
        metrics = json.loads((tmp_path / "fed" / "metrics.json").read_text(encoding="utf-8"))
        exchanged[frozen] = metrics["exchanged"]
        assert metrics["exchanged"]["lora_a_frozen"] is frozen
        assert metrics["global"]["1"] != metrics["global"]["0"]  # B and the head still learn
    lora_a = exchanged[False]["tensors"] - exchanged[True]["tensors"]  # one A per B: half the LoRA tensors
    assert lora_a > 0 and exchanged[True]["bytes_per_message"] < exchanged[False]["bytes_per_message"]
    assert "only B and the head travel (FFA-LoRA)" in (tmp_path / "fed" / "report.md").read_text(encoding="utf-8")


def test_freeze_lora_a_without_lora_is_refused_naming_the_key(tmp_path, tiny_bert, phrasebank_split, capsys):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="freeze_lora_a: true\nrun_overrides: [peft.method=none]\n")
    assert main(["federate", str(fed)]) == 2
    err = capsys.readouterr().err
    assert "key 'freeze_lora_a'" in err and "peft.method is 'none'" in err
    assert not (tmp_path / "fed").exists()


def test_a_misspelt_federate_key_is_refused_with_one_message(tmp_path, tiny_bert, phrasebank_split):
    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="round: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "domainfit", "federate", str(fed)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{fed}, key 'round': unknown key. Did you mean 'rounds'?" in proc.stderr
    assert not (tmp_path / "fed").exists()  # nothing written


def test_proximal_mu_without_fedprox_is_refused(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="proximal_mu: 0.1\n")
    assert main(["federate", str(fed)]) == 2


def test_server_momentum_without_fedavgm_is_refused(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="server_momentum: 0.5\n")
    assert main(["federate", str(fed)]) == 2


def test_fedavgm_runs_flowers_fedavgm_with_the_configured_server_step(tmp_path, tiny_bert, phrasebank_split):
    pytest.importorskip("flwr")
    from flwr.serverapp.strategy import FedAvgM

    from domainfit.cli import main
    from domainfit.config.federate import load_federate_config
    from domainfit.federated.apps import RoundLog, create_strategy

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    extra = "strategy: fedavgm\nserver_momentum: 0.5\nserver_learning_rate: 2.0\n"
    fed = _federate_config(tmp_path, tiny_bert, sites, extra=extra)
    strategy = create_strategy(load_federate_config(fed), RoundLog())
    assert isinstance(strategy, FedAvgM) and (strategy.server_momentum, strategy.server_learning_rate) == (0.5, 2.0)

    assert main(["federate", str(fed)]) == 0
    metrics = json.loads((tmp_path / "fed" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["strategy"] == "fedavgm" and metrics["global"]["2"] != metrics["global"]["0"]
    assert "server momentum 0.5" in (tmp_path / "fed" / "report.md").read_text(encoding="utf-8")


def test_server_tau_without_an_adaptive_strategy_is_refused(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="strategy: fedavgm\nserver_tau: 0.01\n")
    assert main(["federate", str(fed)]) == 2


def test_every_strategy_the_config_accepts_is_registered_and_no_other():
    pytest.importorskip("flwr")
    from domainfit.config.federate import STRATEGIES
    from domainfit.federated.strategies import STRATEGIES as REGISTERED

    assert sorted(STRATEGIES) == REGISTERED.names()


def test_the_server_step_defaults_to_the_strategys_own():
    from domainfit.config.federate import FederateConfig

    assert FederateConfig(strategy="fedavgm").server_step_size == 1.0
    assert FederateConfig(strategy="fedadam").server_step_size == 0.01
    assert FederateConfig(strategy="fedyogi", server_learning_rate=0.2).server_step_size == 0.2


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_fedadam_and_fedyogi_move_each_weight_by_about_the_server_step(name):
    """Reddi et al. 2021: the averaged update is a pseudo-gradient for a server-side Adam/Yogi, so a weight
    whose update is a thousand times larger moves about as far as the others (not a thousand times further)."""
    pytest.importorskip("flwr")
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAdam, FedYogi

    from domainfit.config.federate import FederateConfig
    from domainfit.federated.apps import RoundLog, create_strategy

    fed = FederateConfig(
        sites={"a": "a.csv", "b": "b.csv"},
        strategy=name,
        server_learning_rate=0.05,
        server_momentum=0.8,
        server_tau=1e-4,
    )
    strategy = create_strategy(fed, RoundLog())
    assert isinstance(strategy, FedAdam if name == "fedadam" else FedYogi)
    assert (strategy.eta, strategy.beta_1, strategy.tau) == (0.05, 0.8, 1e-4)
    strategy.current_arrays = {"w": np.zeros(2, dtype=np.float32)}  # what configure_train sets: the global weights
    replies = []
    for name_, n in (("a", 1), ("b", 3)):
        sent = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), 1, "train")
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": torch.tensor([0.01, 10.0])}),
                "metrics": MetricRecord({"num-examples": n, "train_loss": 1.0}),
                "site": ConfigRecord({"name": name_}),
            }
        )
        replies.append(Message(content, reply_to=sent))
    arrays, _ = strategy.aggregate_train(1, replies)
    moved = arrays.to_torch_state_dict()["w"]
    # towards the update, by the order of the step (Yogi has no bias correction: its first move is
    # eta (1 - beta_1) / sqrt(1 - beta_2) = 2 eta here; Adam's is bias-corrected to about 0.5 eta)
    assert bool((moved > 0).all()) and float(moved.max()) <= 3 * 0.05
    assert float(moved[1] / moved[0]) < 2.0  # the updates differ 1000-fold; the moves do not
    assert float(moved[1]) < 1.0  # FedAvg would have jumped to 10
    assert moved.dtype == torch.float32  # Flower's NumPy step would make it float64: twice the bytes sent


def test_fedadam_trains_a_federation_end_to_end(tmp_path, tiny_bert, phrasebank_split):
    pytest.importorskip("flwr")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="strategy: fedadam\nserver_learning_rate: 0.005\n")
    assert main(["federate", str(fed)]) == 0
    metrics = json.loads((tmp_path / "fed" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["strategy"] == "fedadam" and metrics["global"]["2"] != metrics["global"]["0"]
    report = (tmp_path / "fed" / "report.md").read_text(encoding="utf-8")
    assert "server learning rate 0.005" in report and "server tau 0.001" in report


def test_dp_sgd_reports_the_epsilon_each_site_has_spent(tmp_path, tiny_bert, phrasebank_split):
    pytest.importorskip("flwr")
    pytest.importorskip("opacus")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="dp:\n  enabled: true\n  noise_multiplier: 0.8\n")
    assert main(["federate", str(fed)]) == 0
    metrics = json.loads((tmp_path / "fed" / "metrics.json").read_text(encoding="utf-8"))
    first, second = (metrics["sites_train"][r]["site0"]["epsilon"] for r in ("1", "2"))
    assert 0 < first < second  # spending accumulates over rounds
    assert "site0: epsilon" in (tmp_path / "fed" / "report.md").read_text(encoding="utf-8")


def test_dp_settings_without_dp_enabled_are_refused(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.config.federate import load_federate_config
    from domainfit.errors import ConfigError

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="dp:\n  noise_multiplier: 0.8\n")
    with pytest.raises(ConfigError, match="key 'dp.noise_multiplier': differential privacy is off"):
        load_federate_config(fed)


def test_sites_compute_in_the_run_configs_precision(tmp_path, tiny_bert, phrasebank_split):
    """train.precision reaches the sites' training and scoring, as it reaches domainfit train's (a federation
    compared with a centralised run must compute alike): bf16 autocast moves the scores a little, not a lot."""
    pytest.importorskip("flwr")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="rounds: 1\n")
    fed.write_text(fed.read_text(encoding="utf-8").replace("rounds: 2\n", ""), encoding="utf-8")
    scores = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["federate", str(fed), f"output_dir={out}", f"run_overrides=[train.precision={precision}]"]) == 0
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["precision"] == precision
        assert json.loads((out / "run.json").read_text())["mixed_precision"] == {"fp32": "no"}.get(precision, precision)
        assert f"precision: {precision}" in (out / "report.md").read_text(encoding="utf-8")
        scores[precision] = metrics["global"]["1"]["loss"], metrics["sites_train"]["1"]["site0"]["train_loss"]
    for fp32, bf16 in zip(scores["fp32"], scores["bf16"]):
        assert fp32 != bf16 and bf16 == pytest.approx(fp32, abs=0.05)


def test_dp_sgd_computes_in_fp32_whatever_the_precision(caplog):
    from domainfit.config import RunConfig
    from domainfit.config.federate import FederateConfig, PrivacyConfig
    from domainfit.federated.simulation import site_precision

    cfg = RunConfig()
    cfg.train.precision = "bf16"
    fed = FederateConfig(sites={"a": "a.csv"}, dp=PrivacyConfig(enabled=True))
    assert site_precision(fed, cfg, torch.device("cpu")) == "no"
    assert "DP-SGD trains in fp32" in caplog.text
    fed.dp.enabled = False
    assert site_precision(fed, cfg, torch.device("cpu")) == "bf16"
