"""Data-parallel training on CPU (gloo): two processes train like one with the same global batch,
only rank 0 writes the run folder, a stop on rank 0 stops all, and a torchrun-style environment
of one process changes nothing.

Two spawned processes (MASTER_ADDR=127.0.0.1, a free port) train 256 real faces for 2 epochs, no
augmentation, dropout off (its masks are drawn per process, so no split can match one process):
- a network without batch norm matches one process to float rounding (REL_EXACT): gradients
  averaged over the two halves of each global batch are the gradient of the whole batch;
- the `small` network matches within REL_BN: on CPU there is no SyncBatchNorm, so each process
  normalises by its own 32 images' statistics (on CUDA they are synchronised);
- the run is stopped by rank 0 after epoch 1 and resumed from the folder, so stop propagation
  and resume are part of the comparison with an uninterrupted single-process run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from fer_core.data.augment import AugmentConfig
from fer_core.models.networks import build_model
from fer_core.training import distributed
from fer_core.training.config import TrainConfig
from fer_core.training.recipes import Recipe
from fer_core.training.runs import DataSelection, select_indices, train_run
from fer_core.training.trainer import Callback, Trainer, seed_everything

WORLD = 2
CONFIG = TrainConfig(
    epochs=2, batch_size=64, lr=3e-3, augment=AugmentConfig.none(), device="cpu", seed=0
)
REL_EXACT = 1e-5  # float rounding of the gradient average over 8 steps (measured: 7e-8)
REL_BN = 2e-2  # per-process batch-norm statistics on CPU (measured: 4e-3)
N_TRAIN, N_VAL = 256, 128


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny() -> nn.Module:
    """A network without batch norm or dropout: nothing in it depends on the batch split."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 11 * 11, 7),
    )  # fmt: skip


def _no_dropout(trainer: Trainer) -> None:
    for module in trainer.model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, trainer, metrics):
        trainer.request_stop()


class _StopAtBatch(Callback):
    def __init__(self, batch: int) -> None:
        self.batch, self.seen = batch, 0

    def on_batch_end(self, trainer, progress):
        self.seen += 1
        if self.seen == self.batch:
            trainer.request_stop()


def _history(result) -> list[list[float]]:
    return [[m.train_loss, m.train_acc, m.val_loss, m.val_acc] for m in result.history]


def _weights(model: nn.Module) -> list[float]:
    return [float(p.detach().double().sum()) for p in model.parameters()]


def _small_run(data, run_dir: Path, stop_first: bool):
    """The `small` network into `run_dir`; with stop_first, stopped after epoch 1 and resumed."""
    recipe = Recipe("small", CONFIG)
    if stop_first:
        first = train_run(data, recipe, run_dir, DataSelection(), [_StopAfterFirstEpoch()],
                          trainer_hook=_no_dropout)[1]  # fmt: skip
        assert first.stopped and len(first.history) == 1
    return train_run(data, recipe, run_dir, DataSelection(), trainer_hook=_no_dropout)[1]


def _worker(rank: int, port: int, data, out: str) -> None:
    """One of the WORLD processes: train both networks and a stopped run, write what it saw."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from fer_core.training import runs

    writes: list[str] = []
    if rank != 0:  # any write by another rank is recorded (and then fails the test)
        for name in ("write_json_atomic", "atomic_torch_save", "save_checkpoint"):
            setattr(runs, name, lambda *a, _n=name, **k: writes.append(_n))
    small = _small_run(data, Path(out) / "run", stop_first=True)
    x, y, vx, vy = _arrays(data)
    tiny = Trainer(_tiny(), CONFIG, x, y, vx, vy)
    tiny_result = tiny.fit()
    stopper = [_StopAtBatch(2)] if rank == 0 else []
    stopped = Trainer(_tiny(), replace(CONFIG, epochs=5), x, y, vx, vy, stopper).fit()
    record = {
        "small": _history(small), "tiny": _history(tiny_result), "tiny_weights": _weights(tiny.model),
        "stopped": [stopped.stopped, len(stopped.history)], "writes": writes,
    }  # fmt: skip
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    distributed.shutdown()


def _arrays(data):
    train_idx, val_idx = select_indices(data, DataSelection())
    return (
        data.images[train_idx],
        data.labels[train_idx],
        data.images[val_idx],
        data.labels[val_idx],
    )


@pytest.fixture(scope="module")
def faces(csv_data):
    """256 training and 128 PublicTest faces as one small dataset."""
    train, val = (np.flatnonzero(csv_data.split_mask(s)) for s in ("train", "public_test"))
    return csv_data.subset(np.concatenate([train[:N_TRAIN], val[:N_VAL]]))


@pytest.fixture(scope="module")
def two_processes(faces, tmp_path_factory):
    """The records of both ranks and the run folder they trained into."""
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(_free_port(), faces, str(out)), nprocs=WORLD)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)], out / "run"


@pytest.fixture(scope="module")
def one_process(faces, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        small = _small_run(faces, tmp_path_factory.mktemp("single") / "run", stop_first=False)
        tiny = Trainer(_tiny(), CONFIG, *_arrays(faces)).fit()
    finally:
        torch.set_num_threads(threads)
    return {"small": _history(small), "tiny": _history(tiny)}


def test_two_processes_train_like_one(two_processes, one_process):
    (rank0, rank1), _ = two_processes
    assert rank0["tiny"] == rank1["tiny"] and rank0["small"] == rank1["small"]  # reduced numbers
    assert rank0["tiny_weights"] == rank1["tiny_weights"]  # DDP kept the replicas identical
    for key, rel in (("tiny", REL_EXACT), ("small", REL_BN)):
        got, want = np.array(rank0[key]), np.array(one_process[key])
        assert got.shape == want.shape == (2, 4)
        assert got[:, 0] == pytest.approx(want[:, 0], rel=rel), key  # training loss per epoch
        assert got[:, 2] == pytest.approx(want[:, 2], rel=rel), key  # validation loss
    assert rank0["tiny"][0][0] != rank0["tiny"][1][0]  # it trained: the loss moved


def test_only_rank_zero_writes_the_run_folder(two_processes):
    (rank0, rank1), run_dir = two_processes
    assert rank0["writes"] == [] and rank1["writes"] == []
    record = json.loads((run_dir / "run.json").read_text())
    assert record["world_size"] == WORLD and record["status"] == "finished"
    assert (record["global_batch"], record["batch_per_process"], record["lr"]) == (64, 32, 3e-3)
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["train_loss"] for h in history] == [row[0] for row in rank0["small"]]
    assert (run_dir / "best.pt").is_file() and (run_dir / "state.pt").is_file()
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["rank0.json", "rank1.json", "run"]


def test_a_stop_on_rank_zero_stops_every_rank(two_processes):
    (rank0, rank1), _ = two_processes
    assert rank0["stopped"] == rank1["stopped"] == [True, 0]  # mid-epoch: nothing kept


def test_torchrun_env_of_one_process_changes_nothing(faces, monkeypatch):
    x, y, vx, vy = _arrays(faces)
    cfg = replace(CONFIG, augment=AugmentConfig.strong(), mixup_alpha=0.2, ema_decay=0.9)
    seed_everything(0)
    plain = Trainer(build_model("small"), cfg, x, y, vx, vy).fit()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    seed_everything(0)
    trainer = Trainer(build_model("small"), cfg, x, y, vx, vy)
    assert trainer.world_size == 1 and not dist.is_initialized()
    assert _history(trainer.fit()) == _history(plain)


def test_batch_size_must_split_over_the_processes():
    from fer_core.training.trainer import _check_world

    with pytest.raises(ValueError, match="global batch"):
        _check_world(replace(CONFIG, batch_size=63), 2, 256)
    _check_world(CONFIG, 2, 256)


def test_torchrun_trains_through_the_command_line(tmp_path):
    """`torchrun --nproc-per-node 2 -m fer_core train`: one run folder, named by rank 0."""
    from conftest import CSV_PATH, REPO

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               "-m", "fer_core", "train", "--data", str(CSV_PATH), "--arch", "small",
               "--limit", "128", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
               "--out", str(tmp_path), "--quiet"]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = tmp_path.iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["world_size"] == 2 and record["status"] == "finished"
    assert record["command"].startswith("torchrun --nproc-per-node 2 -m fer_core train")
    assert proc.stderr.count("epoch   1") == 1  # rank 0 alone prints
