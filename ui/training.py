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


class _Feed(Callback):
    def __init__(self, manager: TrainingManager) -> None:
        self.manager = manager

    def on_train_start(self, trainer: Trainer) -> None:
        self.manager._update(
            status="running",
            epochs=trainer.config.epochs,
            history=[asdict(m) for m in trainer.history],
            resumed_epochs=len(trainer.history),
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
