"""Video analysis for the app: one background job per session, and the model it uses.

The worker thread never calls st.*: `fer_core.vision.video.analyse_video` reports into a lock-protected
`_Work`, and the Video tab reads `VideoJob.snapshot()` from an `st.fragment(run_every=...)`, as the
Train page does with its training manager. Jobs of all sessions queue for one slot, so two
analyses never split the server's CPUs between them.

What the user uploaded lives in a temporary folder that the job owns, with the results. The folder
is deleted when the job is cleared or replaced, and when the session ends: session state then drops
its `VideoJob`, whose finalizer cancels the work and removes the folder (once the worker has
stopped, if it was running). Server exit removes it too.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import threading
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import streamlit as st

from fer_core.errors import FerError
from fer_core.lite.checkpoint_info import DEFAULT_CHECKPOINT, FAST_CHECKPOINT
from fer_core.vision.video import VIDEO_TYPES, VideoOptions, VideoProgress
from ui import state

MAX_UPLOAD_MB = 200
TABLE_KEY = "video_faces"  # the per-face table's selection, reset with its job
_SLOT = threading.Semaphore(1)  # one analysis at a time per server; the others queue


@dataclass
class JobState:
    name: str
    status: str = "queued"  # queued | running | cancelling | finished | cancelled | failed
    progress: VideoProgress | None = None
    message: str = ""
    summary: dict | None = None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running", "cancelling")


class _Work:
    """What the worker thread touches: the state, the cancel flag and the folder."""

    def __init__(self, name: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fer_video_")
        self.folder = Path(self._dir.name)
        suffix = Path(name).suffix.lower()
        self.input = self.folder / f"input{suffix if suffix[1:] in VIDEO_TYPES else '.mp4'}"
        self.out = self.folder / "out"
        self.lock = threading.Lock()
        self.state = JobState(name)
        self.cancel = threading.Event()
        self.closed = False

    def run(self, predictor, options: VideoOptions) -> None:
        while not _SLOT.acquire(timeout=0.2):
            if self.cancel.is_set():
                self._end("cancelled", "Cancelled before it started.")
                return
        try:
            self._set(status="running")
            self._analyse(predictor, options)
        finally:
            _SLOT.release()

    def _analyse(self, predictor, options: VideoOptions) -> None:
        from fer_core.vision.video import analyse_video

        try:
            summary = analyse_video(
                self.input,
                self.out,
                predictor,
                options,
                on_progress=lambda p: self._set(progress=p),
                should_stop=self.cancel.is_set,
            )
        except FerError as exc:
            self._end("failed", str(exc))
        except Exception as exc:  # one line for the user, the traceback in the server log
            traceback.print_exc()
            self._end("failed", f"The analysis failed: {type(exc).__name__}: {exc}")
        else:
            video = summary["video"]
            done = f"{video['frames_processed']:,} frames analysed in {summary['analysis_s']:.0f} s"
            if summary["complete"]:
                self._end("finished", f"Done: {done}.", summary)
            else:
                self._end("cancelled", f"Cancelled: {done}; the results cover those.", summary)

    def _set(self, **changes) -> None:
        with self.lock:
            for key, value in changes.items():
                if key == "status" and self.state.status == "cancelling":
                    continue  # a pending cancel is not overwritten by progress
                setattr(self.state, key, value)

    def _end(self, status: str, message: str, summary: dict | None = None) -> None:
        with self.lock:
            self.state.status, self.state.message, self.state.summary = status, message, summary
            if self.closed:
                self._dir.cleanup()

    def request_cancel(self) -> None:
        self.cancel.set()
        with self.lock:
            if self.state.active:
                self.state.status = "cancelling"

    def close(self) -> None:
        """Cancel, and remove the folder now, or when the worker stops if it is running."""
        self.cancel.set()
        with self.lock:
            self.closed = True
            if not self.state.active:
                self._dir.cleanup()


class VideoJob:
    """One analysis: the upload copied into a private folder, then analysed in a worker thread."""

    def __init__(self, name: str, source: IO[bytes], predictor, options: VideoOptions) -> None:
        work = _Work(name)
        source.seek(0)
        with open(work.input, "wb") as f:
            shutil.copyfileobj(source, f, length=2**20)
        self._work = work
        self._faces = None
        # Runs when the session drops this job (or at exit); it must not refer to self.
        self._finalizer = weakref.finalize(self, work.close)
        self._thread = threading.Thread(
            target=work.run, args=(predictor, options), name="fer-video", daemon=True
        )
        self._thread.start()

    def snapshot(self) -> JobState:
        with self._work.lock:
            return copy.copy(self._work.state)

    def cancel(self) -> None:
        """Stop after the current frame; what was analysed is kept."""
        self._work.request_cancel()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self._finalizer()  # runs work.close once

    @property
    def folder(self) -> Path:
        return self._work.folder

    def output(self, name: str) -> Path:
        return self._work.out / name

    def faces(self):
        """faces.csv as a DataFrame, read once per job."""
        if self._faces is None:
            from fer_core.vision.video import CSV_NAME, load_faces

            self._faces = load_faces(self.output(CSV_NAME))
        return self._faces


# ----------------------------------------------------------------------------- the session's job


def current_job() -> VideoJob | None:
    return st.session_state.get(state.VIDEO_JOB)


def clear_job() -> None:
    job = st.session_state.pop(state.VIDEO_JOB, None)
    st.session_state.pop(TABLE_KEY, None)
    if job is not None:
        job.close()


def start_job(upload, model_path: str, every: int) -> VideoJob:
    """Replace the session's job (its files go) by an analysis of `upload`."""
    clear_job()
    predictor = video_predictor(model_path)
    job = VideoJob(upload.name, upload, predictor, VideoOptions(every=every))
    st.session_state[state.VIDEO_JOB] = job
    return job


def model_choices() -> dict[str, str]:
    """Label -> checkpoint: the fast shipped model first (the speed of a webcam), then the
    active model when it is another one."""
    choices = {}
    if FAST_CHECKPOINT.exists():
        choices[f"Fast: {FAST_CHECKPOINT.name}"] = str(FAST_CHECKPOINT)
    active = state.active_model_path()
    name = "the shipped model" if active == str(DEFAULT_CHECKPOINT) else Path(active).parent.name
    choices[f"Accurate: {name} (the active model)"] = active
    return choices


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _predictor(path: str, stamp: float):
    from fer_core.predict import Predictor
    from fer_core.vision.faces import webcam_detector

    del stamp
    ckpt, error = state.get_checkpoint(path)
    if ckpt is None:
        raise FerError(error)
    return Predictor(ckpt, tta="none", detector=webcam_detector())


def video_predictor(path: str):
    """Video files use the webcam's detector settings and no test-time augmentation."""
    return _predictor(path, state.stamp(path))
