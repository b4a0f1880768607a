"""Session-state keys, app folders, and cached access to datasets, checkpoints and predictors."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from fer_core.data.fer2013 import FerData, load_dataset
from fer_core.errors import FerError
from fer_core.lite.checkpoint_info import DEFAULT_CHECKPOINT, FAST_CHECKPOINT, read_info

if TYPE_CHECKING:  # torch-backed; imported where used, so a cold Home page does not wait for torch
    from fer_core.lite.checkpoint_info import CheckpointInfo
    from fer_core.models.checkpoint import Checkpoint
    from fer_core.predict import Predictor

# Session-state keys, named in one place.
DATA_PATH = "data_path"
MODEL_PATH = "model_path"
UPLOADED_DATA = "uploaded_data"
SAMPLE_SEED = "sample_seed"
EVAL_REQUESTS = "eval_requests"
VIDEO_JOB = "video_job"  # the session's video analysis (ui/video.py)
TRAIN_NOTICE = "train_notice"  # a message the Train page shows after its own st.rerun()
STOP_CONFIRM = "stop_confirm"  # the run dir whose Stop (started by another session) awaits a yes


def secret(key: str):
    """A value from .streamlit/secrets.toml (or the cloud's Secrets), or None."""
    try:
        return st.secrets.get(key)
    except Exception:  # no secrets file at all, or an unreadable one
        return None


def export_secrets(keys) -> None:
    """Copy secrets into the environment, where kagglehub and streamlit-webrtc look for them.
    A variable already set in the environment wins."""
    for key in keys:
        value = secret(key)
        if value and not os.environ.get(key):
            os.environ[key] = str(value)


def app_dir() -> Path:
    """Where the app keeps runs and uploaded datasets: $FER_APP_DIR, else ~/.cache/fer_core/app."""
    env = os.environ.get("FER_APP_DIR")
    path = Path(env) if env else Path.home() / ".cache" / "fer_core" / "app"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = app_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_dir() -> Path:
    """Uploaded datasets and photo sets: `<app dir>/datasets/<id>/<file name>`, kept across
    restarts and refreshes, at most `FER_UPLOADS_MB` (default 2000) in all, oldest removed first."""
    path = app_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_upload(upload) -> str:
    """Write an uploaded file once into its own folder under `upload_dir` (a file refused later
    never overwrites an earlier upload of the same name); returns its path."""
    import hashlib

    folder = upload_dir() / hashlib.sha256(upload.file_id.encode()).hexdigest()[:16]
    target = folder / Path(upload.name).name
    if not target.exists():
        folder.mkdir(exist_ok=True)
        target.write_bytes(upload.getbuffer())
        prune_uploads(keep=folder)
    return str(target)


def discard_upload(path: str) -> None:
    """Remove an upload that was refused (its file and its folder)."""
    import shutil

    folder = Path(path).parent
    if folder.parent == upload_dir():  # never anything outside the upload folder
        shutil.rmtree(folder, ignore_errors=True)


def prune_uploads(keep: Path | None = None) -> None:
    """Remove the oldest uploads until all of them fit in FER_UPLOADS_MB (never `keep`)."""
    import shutil

    limit = float(os.environ.get("FER_UPLOADS_MB", 2000)) * 1e6
    folders = [f for f in upload_dir().iterdir() if f.is_dir() and not f.is_symlink()]
    sizes = {f: sum(p.stat().st_size for p in f.iterdir() if p.is_file()) for f in folders}
    total = sum(sizes.values())
    for folder in sorted(folders, key=lambda f: f.stat().st_mtime):
        if total <= limit:
            break
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]


# ----------------------------------------------------------------------------- dataset


def default_data_path() -> str:
    """A new session's dataset: the one last made active on this server (kept in the app folder,
    so a refresh or a restart keeps an uploaded dataset), else $FER_DATA."""
    try:
        last = json.loads(_last_data_file().read_text())["path"]
        if last and Path(last).exists():
            return last
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return os.environ.get("FER_DATA", "")


def _last_data_file() -> Path:
    return app_dir() / "last_dataset.json"


def active_data_path() -> str:
    if DATA_PATH not in st.session_state:
        st.session_state[DATA_PATH] = default_data_path()
    return st.session_state[DATA_PATH]


def set_data_path(path: str) -> None:
    """Make a dataset this session's active one, and the one new sessions start with."""
    from fer_core.atomic import atomic_write

    st.session_state[DATA_PATH] = path
    record = json.dumps({"path": path}).encode()
    with contextlib.suppress(OSError):  # remembering it is a convenience, not a requirement
        atomic_write(_last_data_file(), lambda handle: handle.write(record))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=2)
def _load_data(path: str, stamp: float) -> FerData:
    del stamp  # part of the cache key: a changed file is loaded again
    return load_dataset(path)


def get_data(path: str | None = None) -> tuple[FerData | None, str | None]:
    """(data, None) or (None, friendly error). No path gives (None, None)."""
    path = active_data_path() if path is None else path
    if not path:
        return None, None
    return cached(_load_data, path, "Dataset not found")


def cached(load, path: str, missing: str = "Not found"):
    """The one getter shape: (load(path, modification time), None), or (None, a friendly error)
    when the file is missing or `fer_core` refuses it. `load` is an `st.cache_*` function keyed on
    the path and its modification time, so a changed file is loaded again."""
    try:
        stamp = Path(path).stat().st_mtime
    except OSError:
        return None, f"{missing}: {path}"
    try:
        return load(path, stamp), None
    except FerError as exc:
        return None, str(exc)


# ----------------------------------------------------------------------------- models


def active_model_path() -> str:
    if MODEL_PATH not in st.session_state:
        st.session_state[MODEL_PATH] = str(DEFAULT_CHECKPOINT)
    return st.session_state[MODEL_PATH]


def set_model_path(path: str) -> None:
    st.session_state[MODEL_PATH] = path


MODEL_MISSING = "Model not found"


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_checkpoint(path: str, stamp: float) -> Checkpoint:
    from fer_core.models.checkpoint import load_checkpoint

    del stamp
    return load_checkpoint(path)


def get_checkpoint(path: str | None = None) -> tuple[Checkpoint | None, str | None]:
    return cached(_load_checkpoint, active_model_path() if path is None else path, MODEL_MISSING)


@st.cache_resource(show_spinner=False, max_entries=4)
def _predictor(path: str, stamp: float) -> Predictor:
    from fer_core.predict import Predictor

    return Predictor(_load_checkpoint(path, stamp))


def get_predictor(path: str | None = None) -> tuple[Predictor | None, str | None]:
    return cached(_predictor, active_model_path() if path is None else path, MODEL_MISSING)


@st.cache_resource(show_spinner=False, max_entries=2)
def _webcam_predictor(path: str, stamp: float) -> Predictor:
    from fer_core.predict import Predictor
    from fer_core.vision.faces import webcam_detector

    return Predictor(_load_checkpoint(path, stamp), tta="none", detector=webcam_detector())


def get_webcam_predictor() -> tuple[Predictor | None, str | None]:
    """The live-video predictor: the small shipped model while the shipped model is active (it
    keeps 20+ frames/s on 2 cores), else the active model; fast detector settings, no TTA."""
    path = active_model_path()
    if path == str(DEFAULT_CHECKPOINT) and FAST_CHECKPOINT.exists():
        path = str(FAST_CHECKPOINT)
    return cached(_webcam_predictor, path, MODEL_MISSING)


@st.cache_resource(show_spinner=False, max_entries=4)
def _info(path: str, stamp: float) -> CheckpointInfo:
    del stamp
    return read_info(path)


def get_model_info(
    path: str | None = None,
) -> tuple[Checkpoint | CheckpointInfo | None, str | None]:
    """Architecture, size and stored metrics of the active (or given) model, for the Home page and
    the sidebar. The shipped models are read without torch (a cold server shows Home about 2 s
    sooner); any other checkpoint is loaded and checked in full, with its errors explained."""
    path = active_model_path() if path is None else path
    if path in (str(DEFAULT_CHECKPOINT), str(FAST_CHECKPOINT)):
        try:
            return _info(path, Path(path).stat().st_mtime), None
        except (OSError, ValueError):
            pass  # the full load below says what is wrong
    return get_checkpoint(path)


_warmed = threading.Event()


def warm_up() -> None:
    """Import torch and the model code in the background, once per server, so that the first
    page that needs them does not wait."""
    if _warmed.is_set():
        return
    _warmed.set()

    def work() -> None:
        import fer_core.predict  # noqa: F401  (imports torch, the models and fer_core.models.checkpoint)

    threading.Thread(target=work, name="fer-warm-up", daemon=True).start()


def model_choices() -> dict[str, str]:
    """Label -> checkpoint path: the shipped model, then every run with a best checkpoint."""
    from fer_core.lite.run_records import BEST_FILE, list_runs

    choices = {}
    if DEFAULT_CHECKPOINT.exists():
        choices["Shipped model"] = str(DEFAULT_CHECKPOINT)
    for run in list_runs(runs_dir()):
        best = run.path / BEST_FILE
        if best.exists():
            acc = f" ({run.best_val_acc:.1%})" if run.best_val_acc is not None else ""
            choices[f"Run {run.name}{acc}"] = str(best)
    return choices


@st.cache_resource(show_spinner="Analysing the dataset…", max_entries=2)
def _report(path: str, stamp: float):
    from fer_core.data.report import build_report

    return build_report(_load_data(path, stamp))


def get_report(path: str | None = None):
    """The dataset report of the active (or given) dataset, cached; None without data."""
    path = active_data_path() if path is None else path
    return cached(_report, path)[0] if path else None


@st.cache_resource(show_spinner=False, max_entries=2)
def _pixel_summary(path: str, stamp: float):
    from fer_core.data.report import class_pixel_summary

    return class_pixel_summary(_load_data(path, stamp))


def get_pixel_summary(path: str | None = None):
    """Mean faces and intensity distributions per class of the train split, cached."""
    path = active_data_path() if path is None else path
    return cached(_pixel_summary, path)[0] if path else None


def ferplus_path(data_path: str) -> Path | None:
    """FER+ labels next to the dataset, if the user has them."""
    folder = Path(data_path).parent if Path(data_path).is_file() else Path(data_path)
    for name in ("ferplus_fer2013new.csv", "fer2013new.csv"):
        if (folder / name).is_file():
            return folder / name
    return None


def evaluation_file(
    model_path: str, model_stamp: float, data_path: str, data_stamp: float, split: str, tta: str
) -> Path:
    """Where a finished evaluation of a model (file and modification time), dataset, split and
    TTA is kept, so a second visit or a restart shows it at once."""
    import hashlib

    key = json.dumps([str(Path(model_path).resolve()), model_stamp, str(data_path), data_stamp,
                      split, tta])  # fmt: skip
    folder = app_dir() / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def stored_evaluation(*request) -> dict | None:
    """The kept evaluation for `evaluation_file(*request)`, or None (also for an unreadable file)."""
    path = evaluation_file(*request)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def evaluation(
    model_path: str,
    model_stamp: float,
    data_path: str,
    data_stamp: float,
    split: str,
    tta: str,
    progress=None,
) -> dict:
    """The evaluation of a model on a split, as fer_core.evaluate returns it (all mistakes),
    computed once and kept on disk. `progress(done, total)` is called as faces are classified."""
    from fer_core.evaluate import evaluate_checkpoint
    from fer_core.training.runs import write_json_atomic

    request = (model_path, model_stamp, data_path, data_stamp, split, tta)
    kept = stored_evaluation(*request)
    if kept is not None:
        return kept
    ckpt = _load_checkpoint(model_path, model_stamp)
    data = _load_data(data_path, data_stamp)
    result, _ = evaluate_checkpoint(ckpt, data, split, tta=tta, progress=progress)
    record = result.to_dict(max_mistakes=None)
    write_json_atomic(evaluation_file(*request), record)
    return record


@st.cache_resource(show_spinner="Reading the photo set…", max_entries=4)
def _photo_set(path: str, stamp: float):
    from fer_core.data.photos import read_photo_set

    del stamp  # part of the cache key
    return read_photo_set(path)


def get_photo_set(path: str):
    """(PhotoSet, None) or (None, friendly error)."""
    return cached(_photo_set, path)


@st.cache_data(show_spinner="Detecting and classifying the faces…", max_entries=4)
def photo_evaluation(
    model_path: str, model_stamp: float, path: str, path_stamp: float, detect: bool, tta: str
):
    """(result dict with all mistakes, (N, 48, 48) crops) of a model on a labelled photo set."""
    from fer_core.evaluate import evaluate_photos

    predictor = _predictor(model_path, model_stamp)
    photos = _photo_set(path, path_stamp)
    result, _, crops = evaluate_photos(predictor, photos, detect=detect, tta=tta)
    return result.to_dict(max_mistakes=None), crops


def stamp(path: str) -> float:
    return Path(path).stat().st_mtime
