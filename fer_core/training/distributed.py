"""Data-parallel training across processes: the process group that `torchrun` describes.

`torchrun --nproc-per-node N -m fer_core train ...` starts N processes and tells each one its
RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR / MASTER_PORT) in the environment. `init()`
joins them into one process group (NCCL on CUDA, gloo on CPU) and gives each its device: GPU
`LOCAL_RANK` on CUDA. Without those variables, or with WORLD_SIZE=1, nothing is initialised and
every helper here returns its input, so a plain `python -m fer_core train` runs as it always did.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fer_core.inference import resolve_device


@dataclass(frozen=True)
class Context:
    """Where this process stands in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it; 1 when the process was not started by a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def context() -> Context:
    """This process's place in an initialised group, else the single-process context."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    rank = dist.get_rank()
    return Context(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


def init(device: str = "auto") -> tuple[Context, torch.device]:
    """Join the process group torchrun describes (once per process; later calls, and a group the
    caller initialised itself, are reused) -> (context, this process's training device)."""
    base = resolve_device(device)
    if not (dist.is_available() and dist.is_initialized()) and env_world_size() > 1:
        _init_group(base)
    ctx = context()
    if not ctx.distributed:
        return ctx, base
    if base.type == "cuda":
        return ctx, torch.device("cuda", ctx.local_rank)
    if base.type != "cpu":
        raise ValueError(f"multi-process training runs on CUDA or CPU, not {base.type}")
    return ctx, base


def _init_group(base: torch.device) -> None:
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
                "start at most one process per GPU"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")  # rank, size and rendezvous from the environment


def shutdown() -> None:
    """Leave the process group, if this process is in one (before the process exits)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0, and in a process that is not part of a group."""
    return context().is_main


def barrier() -> None:
    if context().distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over all processes (the tensor itself when not distributed)."""
    if context().distributed:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean over all processes (the tensor itself when not distributed)."""
    world = context().world_size
    return all_reduce_sum(tensor) / world if world > 1 else tensor


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is True on any of them (blocks: use between epochs)."""
    if not context().distributed:
        return flag
    vote = torch.tensor([float(flag)], device=device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item() > 0)


def broadcast_floats(values: list[float], device: torch.device, src: int = 0) -> list[float]:
    """Rank `src`'s values on every process (float64, so they arrive bit for bit)."""
    if not context().distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=src)
    return tensor.tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable object on every process (e.g. the run folder rank 0 named)."""
    if not context().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class StopVote:
    """Agree, batch by batch, whether any process asked to stop, without stalling the GPU.

    Each batch queues an all-reduce (max) of this process's flag behind the batch's work and
    reads the previous batch's result, which by then is done or nearly: on CUDA it lands in
    pinned memory and only that copy is waited for, so the GPU keeps a batch queued. Every
    process reads the same results at the same batches, so all stop together, one batch after
    the request.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._flags = torch.tensor([0.0, 1.0], device=device)  # built once: no copy per batch
        cuda = device.type == "cuda"
        self._host = torch.zeros(1, pin_memory=cuda)
        self._event = torch.cuda.Event() if cuda else None
        self._pending = False

    def reset(self) -> None:
        """Forget the vote in flight (every process does so at the same point)."""
        self._pending = False

    def vote(self, stop: bool) -> bool:
        """Queue this batch's vote; True when the previous batch's vote was to stop."""
        agreed = self._read()
        flag = self._flags[int(stop)].clone().reshape(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self._host.copy_(flag, non_blocking=self._event is not None)
        if self._event is not None:
            self._event.record()
        self._pending = True
        return agreed

    def _read(self) -> bool:
        if not self._pending:
            return False
        if self._event is not None:
            self._event.synchronize()  # waits for that one copy, not for the batches after it
        return bool(self._host[0] > 0)
