"""Precision choice: explicit settings map directly; `auto` on a CPU follows a measured matmul speed-up."""

import pytest
import torch

from domainfit.training import precision


@pytest.mark.parametrize("setting, expected", [("fp32", "no"), ("bf16", "bf16"), ("fp16", "fp16")])
def test_explicit_precision(setting, expected):
    assert precision.resolve_precision(setting, torch.device("cpu")) == expected


def test_auto_on_cpu_follows_the_measurement(monkeypatch, tmp_path):
    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 4.0)
    assert precision.resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(tmp_path / "b"))
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 0.6)  # AVX-512 without AMX: bf16 is slower
    assert precision.resolve_precision("auto", torch.device("cpu")) == "no"


def test_auto_is_measured_once_per_machine_and_kept(monkeypatch, tmp_path):
    """Two runs on one machine choose alike: a noisy second timing must not flip the precision."""
    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 1.35)
    assert precision.resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 1.25)  # the next timing lands below the bar
    assert precision.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert (tmp_path / "precision.json").is_file()


def test_a_resumed_run_keeps_its_recorded_precision(monkeypatch, tmp_path):
    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 4.0)  # this machine would now pick bf16
    (tmp_path / "run.json").write_text('{"status": "interrupted", "mixed_precision": "no"}')
    assert precision.resolve_precision("auto", torch.device("cpu"), run_dir=tmp_path) == "no"
    assert precision.resolve_precision("auto", torch.device("cpu")) == "bf16"


def test_speedup_measurement_is_a_positive_ratio():
    assert precision.cpu_bf16_speedup.__wrapped__(m=64, k=32, n=64, repeats=1) > 0


def test_cpu_probe_leaves_the_seeded_stream_alone():
    """The bf16 probe runs (once per process, cached) after the run is seeded: it must not shift dropout masks,
    or the first run in a process would train differently from the next with the same seed."""
    from domainfit.training.precision import cpu_bf16_speedup

    cpu_bf16_speedup.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    cpu_bf16_speedup(m=64, k=32, n=64, repeats=1)
    assert torch.equal(torch.rand(4), expected)


def test_two_hosts_of_one_model_name_with_and_without_bf16_keep_separate_choices(monkeypatch, tmp_path):
    """A virtual machine may call hosts with and without bf16 instructions alike ("AMD EPYC"): the choice
    measured on the one must not be read on the other."""
    with_bf16 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    without = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n"
    assert precision._machine_key(with_bf16) != precision._machine_key(without)
    assert "avx512_bf16" in precision._machine_key(with_bf16)
    assert "AMD EPYC" in precision._machine_key(without) and "no bf16 instructions" in precision._machine_key(without)

    monkeypatch.setenv("DOMAINFIT_CACHE_DIR", str(tmp_path))
    real_key = precision._machine_key
    for cpuinfo, speedup, expected in ((with_bf16, 4.1, "bf16"), (without, 0.02, "no")):
        monkeypatch.setattr(precision, "_machine_key", lambda cpuinfo=cpuinfo: real_key(cpuinfo))
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda speedup=speedup: speedup)
        assert precision.resolve_precision("auto", torch.device("cpu")) == expected  # measured, not the other's
