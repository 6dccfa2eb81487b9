"""domainfit federate --deploy-app: the Flower app folder, the labels a deployment needs, a site built from
its node config (with its state carried across messages), and a live run: a local SuperLink and two
SuperNodes on loopback ports, ``flwr run`` of the written app, and the run folder the server writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_federated import _federate_config, _write_sites

import domainfit

LABELS = "labels: [negative, neutral, positive]\n"


def _app(tmp_path, tiny_bert, phrasebank_split, extra: str = LABELS, n_sites: int = 2):
    pytest.importorskip("flwr")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=n_sites)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra=extra)
    assert main(["federate", str(fed), "--deploy-app", str(tmp_path / "app")]) == 0
    return tmp_path / "app", sites


def test_a_deployment_without_labels_is_refused_naming_the_key(tmp_path, tiny_bert, phrasebank_split):
    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites)
    proc = subprocess.run(
        [sys.executable, "-m", "domainfit", "federate", str(fed), "--deploy-app", str(tmp_path / "app")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{fed}, key 'labels': a deployment needs the federation's labels" in proc.stderr
    assert not (tmp_path / "app").exists()  # nothing written


def test_a_label_listed_twice_is_refused(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.config.federate import load_federate_config
    from domainfit.errors import ConfigError

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="labels: [negative, positive, negative]\n")
    with pytest.raises(ConfigError, match="key 'labels': the label 'negative' is listed twice"):
        load_federate_config(fed)


def test_a_site_label_missing_from_labels_is_refused_naming_the_file(tmp_path, tiny_bert, phrasebank_split, capsys):
    pytest.importorskip("flwr")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="labels: [negative, positive]\n")
    assert main(["federate", str(fed)]) == 2
    err = capsys.readouterr().err
    assert str(sites[0]) in err and "label(s) ['neutral'] are not among the federation's labels" in err
    assert not (tmp_path / "fed" / "metrics.json").exists()


def test_the_app_folder_carries_both_configs_and_a_flower_pyproject(tmp_path, tiny_bert, phrasebank_split):
    import tomllib

    app, _ = _app(tmp_path, tiny_bert, phrasebank_split)
    assert sorted(p.name for p in app.iterdir()) == [
        "domainfit_app.py",
        "federate.yaml",
        "pyproject.toml",
        "run.yaml",
    ]
    flwr = tomllib.loads((app / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["flwr"]["app"]
    assert flwr["components"] == {
        "serverapp": "domainfit_app:server_app",
        "clientapp": "domainfit_app:client_app",
    }
    from domainfit.federated.deploy import load_app_configs

    fed, cfg = load_app_configs(app)
    assert fed.labels == ["negative", "neutral", "positive"] and fed.rounds == 2
    assert Path(fed.output_dir).is_absolute() and fed.output_dir == str(tmp_path / "fed")
    assert cfg.peft.method == "lora" and cfg.peft.r == 4 and cfg.train.batch_size == 8
    from domainfit.cli import main  # an existing folder that is not an app is never replaced

    (tmp_path / "mine").mkdir()
    assert main(["federate", str(tmp_path / "federate.yaml"), "--deploy-app", str(tmp_path / "mine")]) == 2


def test_a_site_is_built_from_its_node_config_and_keeps_its_state_across_messages(
    tmp_path, tiny_bert, phrasebank_split
):
    pytest.importorskip("opacus")
    from flwr.app import RecordDict

    from domainfit.errors import ConfigError
    from domainfit.federated.deploy import build_site, keep_site_state

    app, sites = _app(tmp_path, tiny_bert, phrasebank_split, extra=LABELS + "dp:\n  enabled: true\n")
    context = SimpleNamespace(node_config={"site": "site1", "data": str(sites[1])}, state=RecordDict())
    site, model, _ = build_site(app, context)
    assert site.name == "site1" and site.data.labels == ["negative", "neutral", "positive"]
    assert site.num_train == 24  # its own file: 40 rows less 20% validation and 20% test
    site.rounds_trained = 2
    site.privacy.accountant.history = [(1.0, 0.25, 6)]
    keep_site_state(site, context)
    again, _, _ = build_site(app, context)  # the next message: a new process, the same context.state
    assert again.rounds_trained == 2
    assert again.privacy.epsilon == pytest.approx(site.privacy.epsilon) and again.privacy.epsilon > 0

    context.node_config = {"site": "site7"}
    with pytest.raises(ConfigError, match=r"key '--node-config': the node config names site 'site7'"):
        build_site(app, context)


def _serve_in_process(app: Path, node_configs: dict[int, dict[str, str]]):
    """``serve`` on a grid that hands each message to the deployment's ClientApp in this process, one
    node context (node config, state) per site; a ClientApp's exception becomes an error reply, as at a
    SuperNode."""
    from flwr.app import Context, Error, Message, RecordDict

    from domainfit.errors import DomainfitError
    from domainfit.federated.deploy import create_client_app, serve
    from domainfit.federated.grids import LocalGrid

    client = create_client_app(app)
    states = {node: RecordDict() for node in node_configs}

    class Grid(LocalGrid):
        def __init__(self) -> None:
            self._run, self.nodes = None, node_configs

        def send_and_receive(self, messages, *, timeout=None):
            replies = []
            for message in messages:
                node = message.metadata.dst_node_id
                context = Context(
                    run_id=0, node_id=node, node_config=node_configs[node], state=states[node], run_config={}
                )
                try:
                    replies.append(client(message, context))
                except DomainfitError as e:
                    replies.append(Message(Error(code=0, reason=str(e)), reply_to=message))
            return replies

    return serve(app, Grid()), states


def test_the_server_writes_the_run_folder_and_names_a_site_that_sent_no_scores(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.errors import DomainfitError
    from domainfit.federated.deploy import STATE_KEY

    app, sites = _app(tmp_path, tiny_bert, phrasebank_split, extra=LABELS + "overwrite: true\n")
    good = {1: {"site": "site0", "data": str(sites[0])}, 2: {"site": "site1", "data": str(sites[1])}}
    results, states = _serve_in_process(app, good)
    out = tmp_path / "fed"
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == results
    assert set(results["global"]) == {"1", "2"} and set(results["sites_eval"]["2"]) == {"site0", "site1"}
    assert results["traffic"]["2"]["messages"] == 6
    # the server keeps the round best on the sites' validation scores; the global scores hold none of them
    validation = {r: m["f1_macro"] for r, m in results["global_validation"].items()}
    assert validation[str(results["selection"]["kept_round"])] == max(validation.values())
    assert not any(k.startswith("val") for k in results["global"]["1"])
    assert all(states[node][STATE_KEY]["rounds-trained"] == 2 for node in good)  # kept across messages
    assert json.loads((out / "run.json").read_text())["status"] == "finished"

    (out / "metrics.json").unlink()
    typo = {1: good[1], 2: {"site": "site9", "data": str(sites[1])}}  # a SuperNode started with a typo
    with pytest.raises(DomainfitError, match=r"round 1: site\(s\) \['site1'\] sent no scores"):
        _serve_in_process(app, typo)
    assert not (out / "metrics.json").exists()
    assert json.loads((out / "run.json").read_text())["status"] != "finished"


def test_a_deployment_with_frozen_lora_a_checks_each_site_has_the_servers_a(tmp_path, tiny_bert, phrasebank_split):
    app, sites = _app(tmp_path, tiny_bert, phrasebank_split, extra=LABELS + "freeze_lora_a: true\n")
    nodes = {1: {"site": "site0", "data": str(sites[0])}, 2: {"site": "site1", "data": str(sites[1])}}
    results, _ = _serve_in_process(app, nodes)  # the sites build the same A from the same seed: accepted
    assert results["exchanged"]["lora_a_frozen"] is True and set(results["sites_eval"]["2"]) == {"site0", "site1"}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _stop(proc: subprocess.Popen) -> None:
    """End a process this test started, and its children (each was started in its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.mark.slow  # about a minute: every message starts a ClientApp process that imports torch
def test_a_live_superlink_and_two_supernodes_run_the_app(tmp_path, tiny_bert, phrasebank_split):
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "flower-superlink").exists():
        pytest.skip("Flower's deployment commands are not installed next to this Python")
    app, sites = _app(tmp_path, tiny_bert, phrasebank_split)
    fleet, control, serverappio, *clientappio = _free_ports(5)
    home = tmp_path / "flwr-home"  # Flower's config and installed apps: never the user's ~/.flwr
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "domainfit"\n\n[superlink.domainfit]\n'
        f'address = "127.0.0.1:{control}"\ninsecure = true\n',
        encoding="utf-8",
    )
    source = str(Path(domainfit.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # flwr-serverapp, flwr-clientapp
        "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p),
        "HF_HUB_OFFLINE": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with (logs / f"{name}.log").open("w") as log:
            started.append(
                subprocess.Popen(
                    [str(bin_dir / args[0]), *args[1:]],
                    env=env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killed with its children
                )
            )

    try:
        start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--disable-runtime-dependency-installation",
            f"--fleet-api-address=127.0.0.1:{fleet}",
            f"--control-api-address=127.0.0.1:{control}",
            f"--serverappio-api-address=127.0.0.1:{serverappio}",
        )
        for i, port in enumerate(clientappio):
            start(
                f"site{i}",
                "flower-supernode",
                "--insecure",
                f"--superlink=127.0.0.1:{fleet}",
                f"--clientappio-api-address=127.0.0.1:{port}",
                "--node-config",
                f'site="site{i}" data="{sites[i]}"',
            )
        run = subprocess.run(
            [str(bin_dir / "flwr"), "run", str(app), "domainfit", "--stream"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = tmp_path / "fed"
        deadline = time.monotonic() + 120  # the stream may end just before the server's last write
        while not (out / "run.json").is_file() or json.loads((out / "run.json").read_text())["status"] != "finished":
            if time.monotonic() > deadline:
                server_log = (logs / "superlink.log").read_text(errors="replace")[-4000:]
                pytest.fail(f"no finished run folder; flwr run said:\n{run.stdout[-4000:]}\n{server_log}")
            time.sleep(1)
    finally:
        for proc in reversed(started):
            _stop(proc)

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["global"]) == {"1", "2"} and metrics["global_score"] == "sites_weighted_mean"
    assert metrics["global"]["2"]["loss"] != metrics["global"]["1"]["loss"]  # round 2 moved the global model
    for r in ("1", "2"):
        assert set(metrics["sites_train"][r]) == set(metrics["sites_eval"][r]) == {"site0", "site1"}
        assert metrics["sites_train"][r]["site0"]["train_loss"] > 0
        per_site = metrics["sites_eval"][r]
        assert metrics["global"][r]["accuracy"] == pytest.approx(
            sum(m["accuracy"] * m["num-examples"] for m in per_site.values())
            / sum(m["num-examples"] for m in per_site.values())
        )
        # 2 sites x (send + reply) for training, 2 sends for evaluation: LoRA and head only
        assert metrics["traffic"][r]["messages"] == 6
        assert metrics["exchanged"]["bytes_per_message"] * 6 <= metrics["traffic"][r]["sent"]
        assert metrics["traffic"][r]["sent"] < metrics["traffic"][r]["full_weights"]
    assert metrics["sites"]["site0"]["train_examples"] == 24
    assert metrics["sites"]["site1"]["held_out"] == "test"
    assert json.loads((out / "model" / "config.json").read_text())["id2label"] == {
        "0": "negative",
        "1": "neutral",
        "2": "positive",
    }
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| round | global accuracy" in report and "averaged weighted by their held-out examples" in report
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
