"""train.num_threads: a run that will use more threads than the machine has free cores says so."""

from __future__ import annotations

import os

import pytest

from domainfit.training.threads import warn_if_oversubscribed


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)

    def load(value: float) -> None:
        monkeypatch.setattr(os, "getloadavg", lambda: (value, value, value))

    return load


def test_busy_machine_warns_and_names_the_setting(two_cores, caplog):
    two_cores(5.0)  # this process and four other busy ones, on two cores
    with caplog.at_level("WARNING", logger="domainfit.training.threads"):
        assert warn_if_oversubscribed(2)
    assert "train.num_threads=1" in caplog.text and "2 cores" in caplog.text


def test_suggests_the_free_cores(monkeypatch, caplog):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 4.0, 4.0))  # three other busy processes
    with caplog.at_level("WARNING", logger="domainfit.training.threads"):
        assert warn_if_oversubscribed(8)
    assert "train.num_threads=5" in caplog.text


def test_idle_machine_does_not_warn(two_cores, caplog):
    two_cores(0.9)  # only this process, starting up
    with caplog.at_level("WARNING", logger="domainfit.training.threads"):
        assert not warn_if_oversubscribed(2)
    assert caplog.text == ""


def test_one_thread_never_warns(two_cores):
    two_cores(10.0)
    assert not warn_if_oversubscribed(1)
