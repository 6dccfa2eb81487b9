"""Flower grids of ``domainfit federate``: the in-process one of the simulation, and a traffic meter.

Imported only once Flower is known to be installed (:func:`domainfit.federated.exchange.import_flower`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from domainfit.federated.apps import RoundLog, register_handlers
from domainfit.federated.site import Site


class LocalGrid(Grid):
    """An in-process grid: node ``i + 1`` is ``sites[i]``. Messages are handled one after another by the
    ClientApp a deployed site runs, on one shared model (a site holds no weights between messages)."""

    def __init__(self, sites: list[Site], model: torch.nn.Module, device: torch.device) -> None:
        self._run: Any = None
        self.nodes = {i + 1: site for i, site in enumerate(sites)}
        self.app = ClientApp()
        register_handlers(self.app, lambda context: (self.nodes[context.node_id], model, device))

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("the local grid delivers with send_and_receive only")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("the local grid delivers with send_and_receive only")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            context = Context(
                run_id=0,
                node_id=node,
                node_config={"site": self.nodes[node].name},
                state=RecordDict(),
                run_config={},
            )
            replies.append(self.app(message, context))
        return replies


class TrafficMeter(Grid):
    """Delegates to another grid and counts the bytes of every ArrayRecord sent or received, per round.

    Args:
        grid: the grid that delivers (:class:`LocalGrid`, or Flower's gRPC grid in a deployment).
        log: where the counts go: ``traffic[round]`` = ``sent`` (bytes), ``full_weights`` (what the same
            messages would carry with the model's full weights), ``messages``.
        full_bytes: the full weights' bytes per message.
    """

    def __init__(self, grid: Grid, log: RoundLog, full_bytes: int) -> None:
        self.grid, self.log, self.full_bytes = grid, log, full_bytes

    def set_run(self, run: Any) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Any:
        return self.grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self._count(messages, outgoing=True)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        self._count(replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self._count(messages, outgoing=True)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self._count(replies)
        return replies

    def _count(self, messages: list[Message], outgoing: bool = False) -> None:
        if outgoing and messages and "config" in messages[0].content:  # the strategy names the round there
            self.log.current_round = int(messages[0].content["config"].get("server-round", self.log.current_round))
        counts = self.log.traffic.setdefault(self.log.current_round, {"sent": 0, "full_weights": 0, "messages": 0})
        for message in messages:
            if message.has_error():
                continue
            for record in message.content.array_records.values():
                counts["sent"] += record.count_bytes()
                counts["full_weights"] += self.full_bytes
                counts["messages"] += 1
