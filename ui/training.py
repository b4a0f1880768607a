"""One background training run per server, watched by any session through a lock-protected snapshot.

The worker thread never calls st.*: the trainer's callbacks write progress into `TrainingManager`,
and the Train page reads `snapshot()` from an `st.fragment(run_every=...)`. Because the manager is
a process-wide resource, a run survives page changes and browser refreshes: the page reattaches.
"""

from __future__ import annotations

import copy
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fer_core.data.fer2013 import FerData
from fer_core.errors import FerError
from fer_core.training.recipes import Recipe
from fer_core.training.runs import DataSelection, new_run_dir, train_run
from fer_core.training.trainer import BatchProgress, Callback, EpochMetrics, Trainer, TrainResult


@dataclass
class LiveRun:
    status: str = "idle"  # idle | starting | running | stopping | finished | stopped | failed
    run_dir: str = ""
    arch: str = ""
    owner: str = ""
    started: float = 0.0
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    loss: float = 0.0
    images_per_s: float = 0.0
    eta_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    resumed_epochs: int = 0  # epochs finished before this session's start (a resumed run)
    chance: float = 0.0  # validation accuracy of always answering the most common class
    message: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running", "stopping")


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _summary(result: TrainResult, before: int, planned: int) -> str:
    """What a run did, this session's epochs apart from earlier ones for a resumed run:
    "Finished 15 epochs in 42 s." or "Stopped: 1 epoch in this session (22 s), 3 of 10 in all." """
    total = len(result.history)
    verb = "Early stopping" if result.early_stopped else "Stopped" if result.stopped else "Finished"
    if before:
        return (
            f"{verb}: {_epochs(total - before)} in this session ({result.seconds:.0f} s), "
            f"{total} of {planned} in all."
        )
    if result.stopped or result.early_stopped:
        return f"{verb} after {_epochs(total)} ({result.seconds:.0f} s)."
    return f"{verb} {_epochs(total)} in {result.seconds:.0f} s."


LONG_RUN_S = 30 * 60  # the Train page's estimate warns beyond this


def stalled_at_chance(run: LiveRun, epochs: int = 3) -> bool:
    """True when, after `epochs` epochs or more, validation accuracy has never beaten always
    answering the most common class: the settings are not learning (a learning rate too high or
    too low, too little data)."""
    accs = [h["val_acc"] for h in run.history]
    return len(accs) >= epochs and run.chance > 0 and max(accs) <= run.chance + 0.005


def status_of(record_status: str, run_dir: str, live: LiveRun) -> str:
    """A run's status for people: one recorded as running that this server is not training was
    cut off (a crash or a restart); its finished epochs and best checkpoint are kept."""
    if record_status in ("created", "running") and not (live.active and live.run_dir == run_dir):
        return "interrupted"
    return record_status


def recipe_from_form(recipe: Recipe, form: dict, shown: dict, n_train: int):
    """(Recipe, DataSelection) from the Train form's plain values. A field left as the recipe
    shows it keeps the recipe's exact value (one slider stands for brightness and contrast, one
    checkbox for the crop's scale and ratio)."""
    from dataclasses import replace

    from fer_core.training.recipes import with_arch

    cfg = recipe.config
    a = cfg.augment
    if form["jitter"] != shown["jitter"]:
        a = replace(a, brightness=form["jitter"], contrast=form["jitter"])
    if form["crop"] != shown["crop"]:
        crop = form["crop"]
        a = replace(
            a,
            crop_scale=(0.8, 1.0) if crop else (1.0, 1.0),
            crop_ratio=(0.9, 1.1) if crop else (1.0, 1.0),
        )
    rotation = form["rotation"]
    augment = replace(
        a,
        hflip=(a.hflip or 0.5) if form["flip"] else 0.0,
        rotation=float(rotation) if rotation != shown["rotation"] else a.rotation,
        translate=float(form["translate"]),
        noise=form["noise"],
        erasing=form["erasing"],
    )
    config = replace(
        cfg,
        epochs=int(form["epochs"]),
        batch_size=int(form["batch"]),
        lr=float(form["lr"]),
        optimizer=form["optimizer"],
        scheduler=form["scheduler"],
        weight_decay=float(form["weight_decay"]),
        label_smoothing=float(form["smoothing"]),
        augment=augment,
        mixup_alpha=float(form["mixup"]),
        early_stopping=int(form["patience"]),
        device=form["device"],
    )
    limit = int(form["limit"])
    selection = DataSelection(
        val="public_test" if form["val"] == "public_test" else 0.1,
        limit=limit if limit < n_train else None,
    )
    chosen = replace(
        with_arch(recipe, form["arch"]), config=config, class_weighting=form["weighting"]
    )
    return chosen, selection


class _Feed(Callback):
    def __init__(self, manager: TrainingManager) -> None:
        self.manager = manager

    def on_train_start(self, trainer: Trainer) -> None:
        counts = np.bincount(trainer.y_val) if len(trainer.y_val) else np.zeros(1)
        self.manager._update(
            status="running",
            epochs=trainer.config.epochs,
            history=[asdict(m) for m in trainer.history],
            resumed_epochs=len(trainer.history),
            chance=float(counts.max() / max(1, counts.sum())),
        )

    def on_batch_end(self, trainer: Trainer, p: BatchProgress) -> None:
        self.manager._update(
            epoch=p.epoch,
            epochs=p.epochs,
            batch=p.batch,
            batches=p.batches,
            loss=p.loss,
            images_per_s=p.images_per_s,
            eta_s=p.eta_s,
        )

    def on_epoch_end(self, trainer: Trainer, m: EpochMetrics) -> None:
        with self.manager._lock:
            self.manager._run.history.append(asdict(m))


class TrainingManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run = LiveRun()
        self._trainer: Trainer | None = None
        self._thread: threading.Thread | None = None

    def snapshot(self) -> LiveRun:
        with self._lock:
            return copy.deepcopy(self._run)

    def start(
        self,
        data: FerData,
        recipe: Recipe,
        selection: DataSelection,
        runs_root: Path,
        owner: str,
        arch_kwargs: dict | None = None,
        resume_dir: Path | None = None,
    ) -> tuple[bool, str]:
        """Start a run in the background, or resume the one in `resume_dir` from its saved
        state; (False, reason) if a run is already going."""
        with self._lock:
            if self._run.active:
                since = time.strftime("%H:%M:%S", time.localtime(self._run.started))
                who = "you" if self._run.owner == owner else "another session"
                return False, (
                    f"A training run is already in progress (started by {who} at "
                    f"{since}). One run at a time per server: watch it below, or "
                    "wait for it to finish."
                )
            run_dir = Path(resume_dir) if resume_dir else new_run_dir(runs_root, recipe.arch)
            self._run = LiveRun(
                status="starting",
                run_dir=str(run_dir),
                arch=recipe.arch,
                owner=owner,
                started=time.time(),
                epochs=recipe.config.epochs,
            )
            self._trainer = None
        self._thread = threading.Thread(
            target=self._work,
            args=(data, recipe, selection, run_dir, arch_kwargs),
            name="fer-training",
            daemon=True,
        )
        self._thread.start()
        return True, f"Training {'resumed' if resume_dir else 'started'} in {run_dir.name}."

    def stop(self) -> None:
        """Ask the run to stop; the current batch finishes, finished epochs are kept."""
        with self._lock:
            if not self._run.active:
                return
            self._run.status = "stopping"
            trainer = self._trainer
        if trainer is not None:
            trainer.request_stop()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker side

    def _attach(self, trainer: Trainer) -> None:
        with self._lock:
            self._trainer = trainer
            stop_now = self._run.status == "stopping"
        if stop_now:
            trainer.request_stop()

    def _update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                if key == "status" and self._run.status == "stopping":
                    continue  # a pending stop is not overwritten by progress
                setattr(self._run, key, value)

    def _work(self, data, recipe, selection, run_dir, arch_kwargs) -> None:
        try:
            _, result = train_run(
                data,
                recipe,
                run_dir,
                selection,
                [_Feed(self)],
                arch_kwargs=arch_kwargs,
                command="streamlit app",
                trainer_hook=self._attach,
            )
            status = "stopped" if result.stopped else "finished"
            with self._lock:
                self._run.status = status
                self._run.message = _summary(result, self._run.resumed_epochs, self._run.epochs)
        except (FerError, ValueError) as exc:
            with self._lock:
                self._run.status, self._run.message = "failed", str(exc)
        except Exception as exc:  # surfaced to the user as one line, logged in full for us
            traceback.print_exc()
            with self._lock:
                self._run.status = "failed"
                self._run.message = f"Training failed: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._trainer = None
