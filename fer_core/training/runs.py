"""Training runs on FER2013: data selection, a run folder on disk, and resumable recording.

A run folder holds `run.json` (what was asked for, status, timings), `history.json` (one row per
finished epoch), `state.pt` (everything needed to resume) and `best.pt` (the best checkpoint so
far, by the validation metric). Every file is replaced atomically after each epoch (on a GPU while
the next epoch trains: `RunRecorder`), so a crash or a kill never leaves a half-written file and
loses no finished epoch but, on a GPU, the one still being written.

Under `torchrun` every process calls `train_run` with the same folder; only rank 0 writes to it
(and runs the callbacks), the others train beside it and return once the folder is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np
import torch

from fer_core.atomic import atomic_write
from fer_core.data.fer2013 import FerData, class_weights, ferplus_targets, stratified_split
from fer_core.errors import CheckpointError, DataError
from fer_core.labels import CLASSES
from fer_core.lite.run_records import (  # re-exported: reading runs needs no torch
    BEST_FILE,
    HISTORY_FILE,
    RUN_FILE,
    STATE_FILE,
    RunSummary,
    list_runs,  # noqa: F401
    read_run,  # noqa: F401
)
from fer_core.models.checkpoint import (
    Checkpoint,
    atomic_torch_save,
    checkpoint_payload,
    safe_torch_load,
)
from fer_core.models.networks import build_model
from fer_core.training import distributed
from fer_core.training.config import TrainConfig
from fer_core.training.recipes import Recipe
from fer_core.training.trainer import Callback, EpochMetrics, Trainer, TrainResult, seed_everything


def write_json_atomic(path: Path, obj) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(obj, indent=1).encode()))


@dataclass(frozen=True)
class DataSelection:
    """Which images train and which validate. val: "public_test" or a fraction of train."""

    val: str | float = "public_test"
    limit: int | None = None  # stratified subset of the training images (fast CPU runs)
    seed: int = 0
    ferplus: str | None = None  # FER+ vote file (fer2013new.csv): train on soft labels
    ferplus_weight: float = 0.5  # share of the FER+ votes in each soft label


def select_data(
    data: FerData, selection: DataSelection
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, val_images, val_labels) per the selection."""
    train_idx, val_idx = select_indices(data, selection)
    return (
        data.images[train_idx],
        data.labels[train_idx],
        data.images[val_idx],
        data.labels[val_idx],
    )


def select_indices(data: FerData, selection: DataSelection) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) into `data` per the selection."""
    train_idx = np.flatnonzero(data.split_mask("train"))
    if len(train_idx) == 0:
        raise DataError("the dataset has no training split (train/ folder or Usage=Training)")
    if isinstance(selection.val, float) or str(selection.val).replace(".", "", 1).isdigit():
        keep, held = stratified_split(data.labels[train_idx], float(selection.val), selection.seed)
        train_idx, val_idx = train_idx[keep], train_idx[held]
    else:
        val_idx = np.flatnonzero(data.split_mask(str(selection.val)))
        if len(val_idx) == 0:
            raise DataError(
                f"the dataset has no {selection.val} split; choose a validation fraction instead"
            )
    if selection.limit is not None and selection.limit < len(train_idx):
        fraction = selection.limit / len(train_idx)
        _, chosen = stratified_split(
            data.labels[train_idx], fraction, selection.seed, n_held=selection.limit
        )  # exactly `limit` images: a subset of 4000 trains on 4000
        train_idx = train_idx[chosen]
        # Keep validation proportionate so a quick run also validates quickly.
        if len(val_idx) > selection.limit:
            _, v = stratified_split(
                data.labels[val_idx], max(0.05, min(0.95, fraction)), selection.seed
            )
            val_idx = val_idx[v]
    return train_idx, val_idx


def soft_labels(data: FerData, train_idx: np.ndarray, selection: DataSelection):
    """The training images' soft labels from the selection's FER+ file, or None without one."""
    if not selection.ferplus:
        return None
    if (data.rows[train_idx] < 0).all():
        raise DataError(
            "FER+ labels need FER2013 row numbers (the Kaggle CSV, or the archive's "
            "Training_<row>.png names); this dataset has none"
        )
    targets, _ = ferplus_targets(
        selection.ferplus, data.rows[train_idx], data.labels[train_idx], selection.ferplus_weight
    )
    return targets


class RunRecorder(Callback):
    """Writes history, resumable state and the best checkpoint after every finished epoch.

    On the CPU the files are written before the next epoch starts (and before the callbacks after
    this one hear of the epoch: what the app or the CLI shows is on disk). On a GPU, where an
    epoch can take a second and its state a few hundred MB, the state is copied on the GPU when
    the epoch ends, then moved to the CPU and written by a thread of their own (`_EpochWriter`,
    on a CUDA stream of its own) while the next one trains; a kill then loses at most the epoch
    still being written. The run's end, and `close`, wait until every file is on disk."""

    BACKGROUND_DEVICES = ("cuda",)  # device types whose epochs are written in the background

    def __init__(
        self, run_dir: Path, arch: str, arch_kwargs: dict, meta: dict, init: dict | None = None
    ) -> None:
        self.run_dir = run_dir
        self.arch = arch
        self.arch_kwargs = arch_kwargs
        self.meta = meta
        self.extra = {"run": run_dir.name, "command": meta.get("command", "")}
        if init is not None:  # a fine-tuned model keeps the record of what it started from
            self.extra["init"] = init
        self._writer = _EpochWriter(self._write)
        self._background = False
        self._stream: torch.cuda.Stream | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        self._background = trainer.device.type in self.BACKGROUND_DEVICES
        # the writer's own CUDA stream: its copies to the CPU overlap the next epoch's kernels
        cuda = self._background and trainer.device.type == "cuda"
        self._stream = torch.cuda.Stream(trainer.device) if cuda else None
        # a run may resume on another number of processes: record the one it runs on now
        parallel = {key: self.meta[key] for key in _PARALLEL_KEYS if key in self.meta}
        self._update_run(status="running", started=_now(), **parallel)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        history = [asdict(m) for m in trainer.history]
        best = None
        if metrics.is_best:
            best = checkpoint_payload(
                trainer.eval_model,
                self.arch,
                self.arch_kwargs,
                on_device=self._background,
                mean=trainer.config.mean,
                std=trainer.config.std,
                train_config=self.meta.get("train_config", {}),
                history=history,
                metrics={
                    "epoch": metrics.epoch,
                    "val_acc": metrics.val_acc,
                    "val_macro_f1": metrics.val_macro_f1,
                    "val_loss": metrics.val_loss,
                    "val_split": self.meta.get("val"),
                },
                extra=self.extra,
            )
        if not self._background:
            self._write(_EpochFiles(best, trainer.state_dict(), history, metrics.epoch,
                                    trainer.best_epoch))  # fmt: skip
            return
        # Training changes the live tensors in place: they are copied where they are (on the
        # GPU, a fraction of a millisecond queued behind the epoch) and moved to the CPU by the
        # writer, while the next epoch trains.
        state = copy_tensors(trainer.state_dict())
        files = _EpochFiles(best, state, history, metrics.epoch, trainer.best_epoch)
        if self._stream is not None:
            files.copied = torch.cuda.Event()
            files.copied.record(torch.cuda.current_stream(trainer.device))
        self._writer.submit(files)

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        self.close()
        status = "stopped" if result.stopped else "finished"
        self._update_run(status=status, finished=_now(), seconds=round(result.seconds, 2))

    def close(self) -> None:
        """Wait until every finished epoch is on disk; raises what a write raised."""
        self._writer.flush()

    def _write(self, files: _EpochFiles) -> None:
        if files.copied is not None:
            self._to_cpu(files)
        if files.best is not None:
            atomic_torch_save(files.best, self.run_dir / BEST_FILE)
        # State before history: history never claims an epoch the state cannot resume from.
        atomic_torch_save(files.state, self.run_dir / STATE_FILE)
        write_json_atomic(self.run_dir / HISTORY_FILE, files.history)
        self._update_run(epochs_done=files.epoch, best_epoch=files.best_epoch)

    def _to_cpu(self, files: _EpochFiles) -> None:
        """Move an epoch's GPU copies to the CPU on the writer's stream, once the training
        stream has made them (`files.copied`)."""
        stream = cast(torch.cuda.Stream, self._stream)
        with torch.cuda.stream(stream):
            stream.wait_event(cast(torch.cuda.Event, files.copied))
            # Into pinned memory, without blocking: the GPU's copy engine moves them. Copied
            # into pageable memory (staged by the driver through the host), they slowed the
            # training of the epoch running meanwhile, in some runs by a tenth (shipped
            # recipe on an H200: 0.94-1.00 s against 0.87 s an epoch).
            on_gpu = (files.best, files.state)
            files.best, files.state = copy_tensors(on_gpu, "cpu", non_blocking=True)
            stream.synchronize()  # the copies are on the host before they are written, and
            del on_gpu  # the GPU memory they read from is freed only then
        files.copied = None

    def _update_run(self, **changes) -> None:
        path = self.run_dir / RUN_FILE
        record = json.loads(path.read_text()) if path.exists() else {}
        record.update(changes)
        write_json_atomic(path, record)


@dataclass
class _EpochFiles:
    """What one finished epoch writes: the best checkpoint's payload (None when the epoch was not
    the best), the resumable state, the history, and the counts for run.json."""

    best: dict | None
    state: dict
    history: list[dict]
    epoch: int
    best_epoch: int
    copied: torch.cuda.Event | None = None  # when the tensors are GPU copies: made after this


class _EpochWriter:
    """Writes epochs in order on one thread, started when there is work and ended when idle.

    An epoch that ends while the one before it is still being written waits in a single slot;
    a newer one replaces it (its state and history include everything the older one's did),
    keeping the older one's best checkpoint unless it brings its own. A failed write is raised in
    the training thread at the next epoch or at `flush`.
    """

    def __init__(self, write: Callable[[_EpochFiles], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending: _EpochFiles | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, files: _EpochFiles) -> None:
        with self._cond:
            self._raise_error()
            if self._pending is not None and files.best is None:
                files.best = self._pending.best
            self._pending = files
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="run-writer")
                self._thread.start()

    def flush(self) -> None:
        with self._cond:
            while self._thread is not None:
                self._cond.wait()
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                files, self._pending = self._pending, None
                if files is None or self._error is not None:
                    self._thread = None
                    self._cond.notify_all()
                    return
            try:
                self._write(files)
            except BaseException as error:  # raised again in the training thread
                with self._cond:
                    self._error = error


def copy_tensors(obj, device: str | None = None, non_blocking: bool = False):
    """`obj` with every tensor in it (in dicts, lists and tuples) copied, where it is or to
    `device`. `non_blocking` from a GPU to the CPU copies into pinned memory, and the copies are
    complete only once the current stream is synchronised."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device or obj.device, copy=True, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {key: copy_tensors(value, device, non_blocking) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(copy_tensors(value, device, non_blocking) for value in obj)
    return obj


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_dir(root: str | os.PathLike, arch: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{arch}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{stamp}-{arch}-{suffix}"
    path.mkdir(parents=True)
    return path


def train_run(
    data: FerData,
    recipe: Recipe,
    run_dir: str | os.PathLike,
    selection: DataSelection = DataSelection(),
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    arch_kwargs: dict | None = None,
    command: str = "",
    resume: bool = True,
    trainer_hook=None,
    init: Checkpoint | None = None,
) -> tuple[Path, TrainResult]:
    """Train `recipe` on `data` into `run_dir`; resumes from its state.pt when present.

    init: a loaded checkpoint of the recipe's architecture to fine-tune instead of starting from
    random weights.

    trainer_hook(trainer), if given, receives the Trainer before training starts (the app keeps
    it to request a stop). Returns (path of best.pt, result).

    Under torchrun every process calls this with the same `run_dir`; only rank 0 writes the
    folder and runs `callbacks`.
    """
    run_dir = Path(run_dir)
    ctx, _ = distributed.init(recipe.config.device)
    if ctx.is_main:
        _prepare_folder(run_dir)
    train_idx, val_idx = select_indices(data, selection)
    x_train, y_train = data.images[train_idx], data.labels[train_idx]
    targets = soft_labels(data, train_idx, selection)
    config = _weighted(recipe, y_train)
    arch_kwargs = {**recipe.arch_kwargs, **(arch_kwargs or {})}
    meta = run_meta(data, recipe, config, arch_kwargs, selection, len(y_train), len(val_idx))
    meta |= {"init": init.name if init is not None else None, "command": command}
    meta |= parallel_meta(config, ctx.world_size)
    run_path, state_path = run_dir / RUN_FILE, run_dir / STATE_FILE
    resuming = resume and state_path.exists()
    if resuming and (changed := _changed_settings(run_path, meta)):
        raise CheckpointError(
            f"{run_dir.name} was started with other settings ({', '.join(changed)}); resume it "
            "with the same ones or choose a new run folder"
        )
    seed_everything(config.seed)
    model = _starting_model(recipe.arch, arch_kwargs, init)  # bad options save nothing
    if ctx.is_main and (not run_path.exists() or not resuming):
        write_json_atomic(run_path, {**meta, "status": "created", "created": _now()})
    recorder = RunRecorder(run_dir, recipe.arch, arch_kwargs, meta, init_record(init))
    hooks = [recorder, *callbacks] if ctx.is_main else []  # the others neither write nor print
    trainer = Trainer(model, config, x_train, y_train, data.images[val_idx],
                      data.labels[val_idx], hooks, train_targets=targets)  # fmt: skip
    if resuming:
        _resume(trainer, state_path)
    if trainer_hook is not None:
        trainer_hook(trainer)
    try:
        result = trainer.fit()
    except BaseException:  # the epochs that finished are kept; the training error is reported
        with contextlib.suppress(Exception):
            recorder.close()
        raise
    distributed.barrier()  # every process returns once rank 0 has written the last epoch
    return run_dir / BEST_FILE, result


# what run.json says of the processes a run trains on (updated when it resumes on others)
_PARALLEL_KEYS = ("world_size", "global_batch", "batch_per_process", "lr")


def parallel_meta(config: TrainConfig, world_size: int) -> dict:
    """The run's process count, its global and per-process batch and its learning rate:
    `batch_size` is the global batch, so a recipe optimises alike on any number of processes."""
    return {
        "world_size": world_size,
        "global_batch": config.batch_size,
        "batch_per_process": config.batch_size // world_size,
        "lr": config.lr,
    }


def _prepare_folder(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".*.tmp"):  # left by a writer that was killed mid-write
        stale.unlink(missing_ok=True)


def _weighted(recipe: Recipe, y_train: np.ndarray) -> TrainConfig:
    """The recipe's config with its class weighting turned into loss weights from the training
    labels' counts."""
    config = recipe.config
    if recipe.class_weighting == "none" or config.class_weights is not None:
        return config
    weights = class_weights(np.bincount(y_train, minlength=len(CLASSES)), recipe.class_weighting)
    return TrainConfig.from_dict({**config.to_dict(), "class_weights": weights.tolist()})


def run_meta(data, recipe, config, arch_kwargs, selection, n_train: int, n_val: int) -> dict:
    """What run.json records of a run's settings (checked again when it resumes)."""
    return {
        "arch": recipe.arch,
        "arch_kwargs": arch_kwargs,
        "train_config": config.to_dict(),
        "class_weighting": recipe.class_weighting,
        "data": data.source,
        "val": str(selection.val),
        "limit": selection.limit,
        "n_train": n_train,
        "n_val": n_val,
        "soft_labels": (
            {"ferplus": str(selection.ferplus), "weight": selection.ferplus_weight}
            if selection.ferplus
            else None
        ),
    }


def _starting_model(arch: str, arch_kwargs: dict, init: Checkpoint | None):
    """A fresh network, or with `init` that checkpoint's (which must be of the same kind)."""
    if init is None:
        return build_model(arch, **arch_kwargs)
    if (init.arch, init.arch_kwargs) != (arch, arch_kwargs):
        raise CheckpointError(
            f"{init.name} is {init.arch} {init.arch_kwargs}, not the run's {arch} {arch_kwargs}"
        )
    return init.model


def _resume(trainer: Trainer, state_path: Path) -> None:
    try:
        trainer.load_state_dict(safe_torch_load(state_path))
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise CheckpointError(
            f"{state_path}: cannot resume from this state (it does not fit the model or "
            "optimizer); choose a new run folder"
        ) from None


def init_record(init: Checkpoint | None) -> dict | None:
    """What a fine-tuned checkpoint records of the one it started from: its name, training
    command and recipe, and that checkpoint's own starting point, if any."""
    if init is None:
        return None
    return {
        "checkpoint": init.name,
        "command": init.extra.get("command", ""),
        "train_config": init.train_config,
        **({"init": init.extra["init"]} if "init" in init.extra else {}),
    }


# "init" is not among them: a resumed run takes its weights from state.pt
_RESUME_KEYS = (
    "arch",
    "arch_kwargs",
    "train_config",
    "class_weighting",
    "val",
    "limit",
    "soft_labels",
)
# a run may resume on another device, and with other settings that change only its speed
_ANY_DEVICE = ("device", "compile", "compile_mode", "cudnn_benchmark")


def _changed_settings(run_path: Path, meta: dict) -> list[str]:
    """The settings recorded in run.json that differ from `meta` (empty when none differ)."""
    try:
        record = json.loads(run_path.read_text())
    except (OSError, ValueError):
        return []  # no readable record: the state itself is checked when it is loaded
    changed = []
    for key in _RESUME_KEYS:
        if key not in record:
            continue
        old, new = record[key], json.loads(json.dumps(meta[key]))  # tuples -> lists, as stored
        if key == "train_config" and isinstance(old, dict):
            changed += [k for k in new if k not in _ANY_DEVICE and k in old and old[k] != new[k]]
        elif old != new:
            changed.append(key)
    return changed


def resumable(run: RunSummary) -> bool:
    """A run cut short (stopped, or interrupted by a crash or restart) that can go on from its
    saved state to the epoch count it was started with."""
    return (
        run.status != "finished"
        and run.epochs_done < run.epochs
        and (run.path / STATE_FILE).is_file()
    )


def recipe_of(run: RunSummary) -> tuple[Recipe, DataSelection]:
    """The recipe and data selection a run was started with (from its run.json), to resume it."""
    record = run.record
    try:
        config = TrainConfig.from_dict(record["train_config"])
        val: str | float = record.get("val", "public_test")
        if val != "public_test":
            val = float(val)  # a fraction of train
        recipe = Recipe(
            record["arch"],
            config,
            record.get("class_weighting", "none"),
            arch_kwargs=dict(record.get("arch_kwargs") or {}),
        )
        soft = record.get("soft_labels") or {}
        return recipe, DataSelection(
            val=val,
            limit=record.get("limit"),
            ferplus=soft.get("ferplus"),
            ferplus_weight=float(soft.get("weight", 0.5)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{run.name}: run.json does not describe a run to resume ({exc})"
        ) from None
