"""The Flower side of a federation: the site's message handlers, the strategy, and what each round records.

The same pieces run the simulation on one machine (``federated/simulation.py``: an in-process grid delivers
each message to its site in turn) and a real deployment (``federated/deploy.py``: a Flower SuperLink and one
SuperNode per site). The server runs the rounds of Flower's own strategy (``federated/rounds.py``, the steps of
``Strategy.start`` from any round; the strategies are ``federated/strategies.py``): sample sites, send the
global weights, aggregate the replies weighted by ``num-examples``, ask every site to score the new global
model, and score it centrally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from domainfit.config.federate import FederateConfig
from domainfit.federated.exchange import (
    check_frozen_digest,
    from_record,
    load_trained_state,
    to_record,
    trained_state,
)
from domainfit.federated.selection import validation_metrics
from domainfit.federated.site import Site
from domainfit.federated.strategies import STRATEGIES

WEIGHT_KEY = "num-examples"  # Flower's default weighting key


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar numbers of a metrics dict (what a Flower ``MetricRecord`` carries)."""
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"
    }


def train_handler(site: Site, model: nn.Module, device: torch.device) -> Callable[[Any], Any]:
    """The site's reply to a ``train`` message: load the global weights, train locally, send the result."""

    def handle(message: Any) -> Any:
        from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

        config = message.content["config"]
        check_frozen_digest(model, config.get("frozen-digest"), site.name)  # freeze_lora_a: the same A as the server
        load_trained_state(model, from_record(message.content["arrays"]))
        # Flower's strategies number rounds from 1; a server that does not send num-rounds gets a schedule per round
        metrics = site.fit(
            model,
            int(config["local-epochs"]),
            device,
            round_index=int(config.get("server-round", 1)) - 1,
            num_rounds=int(config.get("num-rounds", 1)),
        )
        content = RecordDict(
            {
                "arrays": to_record(trained_state(model)),
                "metrics": MetricRecord({WEIGHT_KEY: site.num_train, **metrics}),
                "site": ConfigRecord({"name": site.name}),
            }
        )
        return Message(content, reply_to=message)

    return handle


def evaluate_handler(site: Site, model: nn.Module, device: torch.device) -> Callable[[Any], Any]:
    """The site's reply to an ``evaluate`` message: the global model's scores on the site's held-out split, and
    on its validation split (``val_<metric>``, ``val-examples``) for the server's choice of round."""

    def handle(message: Any) -> Any:
        from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

        load_trained_state(model, from_record(message.content["arrays"]))
        metrics = numeric(site.evaluate(model, device))
        if site.held_out == "validation":  # no test split: the held-out scores are the validation scores
            metrics.update(validation_metrics(metrics, len(site.features["validation"])))
        elif "validation" in site.features:  # the server chooses the round on these (federated/selection.py)
            scores = numeric(site.evaluate(model, device, "validation"))
            metrics.update(validation_metrics(scores, len(site.features["validation"])))
        content = RecordDict(
            {
                "metrics": MetricRecord({WEIGHT_KEY: len(site.features[site.held_out]), **metrics}),
                "site": ConfigRecord({"name": site.name, "held-out": site.held_out}),
            }
        )
        return Message(content, reply_to=message)

    return handle


@dataclass
class RoundLog:
    """What each round recorded: per-site training and evaluation metrics, global scores, traffic."""

    sites_train: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    sites_eval: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    global_eval: dict[int, dict[str, float]] = field(default_factory=dict)
    traffic: dict[int, dict[str, int]] = field(default_factory=dict)
    held_out: dict[str, str] = field(default_factory=dict)  # site -> the split it scores on
    current_round: int = 0

    def recorder(self, target: str) -> Callable[[list[Any], str], Any]:
        """A Flower metrics-aggregation function that keeps each site's metrics before averaging them."""
        from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

        def aggregate(records: list[Any], weighted_by_key: str) -> Any:
            per_site = getattr(self, target).setdefault(self.current_round, {})
            for record in records:
                metrics = next(iter(record.metric_records.values()))
                name = str(record["site"]["name"])
                per_site[name] = {k: float(v) for k, v in metrics.items()}
                if "held-out" in record["site"]:
                    self.held_out[name] = str(record["site"]["held-out"])
            return aggregate_metricrecords(records, weighted_by_key)

        return aggregate


def create_strategy(fed: FederateConfig, log: RoundLog) -> Any:
    """Flower's strategy named by the federate config (``federated/strategies.py``) with the config's sampling,
    recording into ``log``."""
    common = {
        "fraction_train": fed.fraction_fit,
        "min_train_nodes": fed.min_fit_sites,
        "min_available_nodes": len(fed.sites),
        "fraction_evaluate": 1.0,
        "min_evaluate_nodes": len(fed.sites),
        "weighted_by_key": WEIGHT_KEY,
        "train_metrics_aggr_fn": log.recorder("sites_train"),
        "evaluate_metrics_aggr_fn": log.recorder("sites_eval"),
    }
    return STRATEGIES.get(fed.strategy, key="strategy")(fed, common)


def register_handlers(
    app: Any,
    resolve: Callable[[Any], tuple[Site, nn.Module, torch.device]],
    after: Callable[[Site, Any], None] | None = None,
) -> None:
    """Register the site's ``train`` and ``evaluate`` handlers on a Flower ``ClientApp``.

    Args:
        app: the ClientApp.
        resolve: ``resolve(context) -> (site, model, device)``: the site a message is for (the simulation
            maps the node id; a deployed SuperNode builds its one site from its node config).
        after: ``after(site, context)``, called once a reply is made: a deployed site keeps what must last
            across rounds in ``context.state``, as each message runs in a new process.
    """

    def handle(make: Callable[..., Callable[[Any], Any]], message: Any, context: Any) -> Any:
        site, model, device = resolve(context)
        reply = make(site, model, device)(message)
        if after is not None:
            after(site, context)
        return reply

    @app.train()
    def train(message: Any, context: Any) -> Any:
        return handle(train_handler, message, context)

    @app.evaluate()
    def evaluate(message: Any, context: Any) -> Any:
        return handle(evaluate_handler, message, context)
