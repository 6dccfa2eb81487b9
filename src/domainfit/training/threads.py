"""A warning when a run will use more CPU threads than the machine has free cores.

torch's CPU kernels split every operation across their threads and wait for the slowest one: on a core
another process also wants, each operation waits for that process's time slice. On a busy 2-core machine a
run went 6-10x slower at 2 threads than at 1. Nothing in torch says so, so the run says it at its start.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's limit)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def warn_if_oversubscribed(threads: int) -> bool:
    """Warn, naming ``train.num_threads``, when ``threads`` plus the machine's other load exceed its cores.

    The other load is the 1-minute load average less this process itself (one runnable task while it starts).

    Args:
        threads: the threads the run will use (``torch.get_num_threads()`` after it is set).

    Returns:
        True if it warned.
    """
    if threads <= 1 or not hasattr(os, "getloadavg"):
        return False  # one thread cannot be fewer
    cores = available_cores()
    other_load = max(0.0, os.getloadavg()[0] - 1.0)
    free = cores - other_load
    # half a core of slack, so the noise of an idle machine's load average does not warn
    if threads <= free + 0.5:
        return False
    suggested = max(1, min(threads - 1, int(free)))
    log.warning(
        "this run will use %d CPU threads, but the machine has %d cores and a load of %.1f from "
        "other processes: torch slows down many times when its threads wait for busy cores. "
        "Set train.num_threads=%d (or fewer) to run faster, or run when the machine is quieter.",
        threads,
        cores,
        other_load,
        suggested,
    )
    return True
