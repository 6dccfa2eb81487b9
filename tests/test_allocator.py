"""Training commands run on mimalloc (domainfit/allocator.py): when they re-execute, when they do not."""

import subprocess
import sys

import pytest

from domainfit import allocator
from domainfit.errors import ConfigError

needs_mimalloc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or allocator.mimalloc_library() is None,
    reason="the cmeel-mimalloc wheel is for Linux",
)


@pytest.fixture
def clean_env(monkeypatch):
    for key in (allocator.CHOICE_ENV, "LD_PRELOAD", allocator._REEXECUTED_ENV):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@needs_mimalloc
def test_preload_command_runs_domainfit_again_on_mimalloc(clean_env):
    command, env = allocator.preload_command(["train", "run.yaml", "train.epochs=1"])
    assert command == [sys.executable, "-m", "domainfit", "train", "run.yaml", "train.epochs=1"]
    assert "libmimalloc" in env["LD_PRELOAD"] and env[allocator._REEXECUTED_ENV] == "1"


@pytest.mark.parametrize(
    "env",
    [{allocator.CHOICE_ENV: "system"}, {"LD_PRELOAD": "/usr/lib/libsomething.so"}, {allocator._REEXECUTED_ENV: "1"}],
)
def test_no_reexec_when_the_user_chose_or_it_already_happened(clean_env, env):
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert allocator.preload_command(["train", "run.yaml"]) is None


def test_unknown_allocator_is_a_config_error(clean_env):
    clean_env.setenv(allocator.CHOICE_ENV, "jemalloc")
    with pytest.raises(ConfigError, match="mimalloc, system"):
        allocator.preload_command(["train", "run.yaml"])


@needs_mimalloc
def test_the_preloaded_child_runs_on_mimalloc_and_can_release_memory(clean_env):
    """A real child process under the planned LD_PRELOAD: mimalloc is loaded, glibc's mmap threshold is left
    alone, and release_memory goes to mi_collect; the plain parent stays on the system allocator."""
    _, env = allocator.preload_command(["train", "x.yaml"])
    probe = (
        "from domainfit.allocator import active_allocator\n"
        "from domainfit.training.memory import release_memory, set_mmap_threshold\n"
        "print(active_allocator(), set_mmap_threshold(1), release_memory())"
    )
    child = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["mimalloc", "False", "True"]
    assert allocator.active_allocator() == "system"
