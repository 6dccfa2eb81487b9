"""Several training processes (``torchrun``, ``accelerate launch``): which one writes, and how the others follow.

    torchrun --nproc_per_node 2 -m domainfit train config.yaml train.num_threads=1
    accelerate launch --num_processes 2 --cpu -m domainfit train config.yaml train.num_threads=1

Every process runs the same loop on its rows of each global batch (``data/batching.py``); Accelerate wraps the
model in DDP, which averages the gradients. Only the main process touches the run folder (lock, config.yaml,
run.json, checkpoints, TensorBoard, model/, metrics.json, report): a decision that reads or writes it is made
there and handed to the others (:func:`on_main_process`), which also makes them wait until it is made. With
one process every function here is a plain call. docs/distributed.md has the commands and Accelerate configs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from domainfit.errors import DomainfitError

T = TypeVar("T")


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process is the launch's main one (global rank 0), read from the launcher's environment so
    the CLI can ask before any process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def _no_accelerator() -> bool:
    import torch  # here, not at the top: the CLI reads is_main_process() without loading torch

    try:
        return torch.accelerator.current_accelerator() is None
    except (AttributeError, RuntimeError):  # older torch; a CPU-only build that raises instead of returning None
        return not torch.cuda.is_available()


def use_cpu() -> bool:
    """Whether Accelerate must be told ``cpu=True``: a launch of several processes on a machine without an
    accelerator. Accelerate only joins CPU processes into one group when told so (``accelerate launch --cpu``
    says it through ``ACCELERATE_USE_CPU``; ``torchrun`` cannot), and each would otherwise train alone."""
    return launched_processes() > 1 and _no_accelerator()


def process_state():
    """Accelerate's ``PartialState``: joins the launched processes into one group (gloo on CPUs, NCCL on
    GPUs) on first use."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


def refuse_sharded_launch() -> None:
    """Refuse an ``accelerate launch`` whose config chooses FSDP or DeepSpeed, before anything is written.

    Both shard the weights and optimizer state over the processes; domainfit's checkpoints, best weights and
    model folder are written whole by the main process, which needs DDP (each process holds the whole model).
    A run whose checkpoints silently hold one shard would be worse than no run.
    """
    for flag, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(flag, "").lower() in ("1", "true", "yes"):
            raise DomainfitError(
                f"the Accelerate config chooses {name} ({flag} is set), which shards the model "
                "over the processes; domainfit's checkpoints and saved model need every process "
                "to hold the whole model (DDP)",
                fix="launch with an Accelerate config whose distributed_type is MULTI_GPU or "
                "MULTI_CPU (DDP; see docs/distributed.md), or with torchrun.",
            )


class MainProcessFailed(DomainfitError):
    """Raised on the other processes when the main one stopped with a user error (it prints the message)."""


def on_main_process(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` on the main process only, its result handed to every process.

    For steps that read or write the run folder (taking the lock, checking a resume, the precision choice):
    they are made once, and the other processes wait for them. A :class:`DomainfitError` on the main process
    is re-raised there and stops the others with :class:`MainProcessFailed`; any other exception is re-raised
    on the main process, and the launcher stops the rest.
    """
    if launched_processes() == 1:
        return function(*args, **kwargs)
    from accelerate.utils import broadcast_object_list

    state = process_state()
    outcome: list[Any] = [None]
    if state.is_main_process:
        try:
            result = function(*args, **kwargs)
        except DomainfitError as e:
            broadcast_object_list([("error", str(e))])
            raise
        except BaseException:
            broadcast_object_list([("error", "the main process stopped with an unexpected error (see its output)")])
            raise
        outcome = [("ok", result)]
    broadcast_object_list(outcome)
    kind, value = outcome[0]
    if kind == "error":
        raise MainProcessFailed(f"process {state.process_index} stopped because the main process did: {value}")
    return value


def evaluation_model(model: Any, accelerator: Any) -> Any:
    """The model to score a split with when several processes share its batches: the bare module, not DDP's.

    A DDP forward after a training step broadcasts the module's buffers (rotary frequencies, position ids,
    BatchNorm statistics), a collective every process must join. A process holding no evaluation batch (a split
    with fewer batches than processes) never joins it, and the others wait for ever. So the buffers are made
    the main process's here, by every process together, as DDP's forward would have, and the bare module scores.
    """
    bare = accelerator.unwrap_model(model)
    if bare is not model:
        import torch.distributed as dist

        for buffer in bare.buffers():
            dist.broadcast(buffer, src=0)
    return bare


def map_over_processes(function: Callable[[list], list], items: list, *, block: int = 1) -> list:
    """``function(items)``, each process computing a share of the items; every process gets the whole result.

    For final work that costs per item and is the same on every process (a generation task's greedy
    generations): with N processes each computes about 1/N of it. The items are dealt in blocks of ``block``
    consecutive ones, round-robin (block k to process k mod N), so a caller that batches sorted items by
    ``block`` gets the same batches as one process makes. ``function`` must return one result per item and
    must not itself call collectives (it runs on shares of different sizes).
    """
    if launched_processes() == 1:
        return function(items)
    from accelerate.utils import gather_object

    state = process_state()
    rank, world = state.process_index, state.num_processes
    blocks = [items[start : start + block] for start in range(0, len(items), block)]
    mine = [item for k in range(rank, len(blocks), world) for item in blocks[k]]
    results = function(mine) if mine else []
    if len(results) != len(mine):
        raise ValueError(f"map_over_processes: {len(mine)} items gave {len(results)} results")
    shares = gather_object([results])  # (processes,): each process's results, in process order
    merged: list = []
    taken = [0] * world
    for k, items_of_block in enumerate(blocks):
        owner = k % world
        merged += shares[owner][taken[owner] : taken[owner] + len(items_of_block)]
        taken[owner] += len(items_of_block)
    return merged


def end_processes() -> None:
    """After a command that ran on several processes succeeded: wait for the others, then leave the process
    group. A process that exits while another still tears the group down can abort it (gloo: "terminate called
    without an active exception", exit -6), failing a run whose work was done."""
    if launched_processes() == 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wait_for_main_process() -> None:
    """A barrier: every process waits here until all (the main one after writing) have arrived."""
    if launched_processes() > 1:
        process_state().wait_for_everyone()
