"""Checkpoints a user can hand the CLI or the app: nothing in them runs, every bad file gets one
clear sentence, and a writer killed at any moment never leaves a damaged file behind.

test_checkpoint.py already refuses a pickle with a payload at the top level of the file; this file
hides payloads elsewhere (inside the weights, the history, an old-style pickle, a bare pickle, a
run's state.pt) and follows them through the app (sidebar model choice, `ui.state`) and the CLI.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import CSV_PATH, REPO, png_bytes
from streamlit.testing.v1 import AppTest
from test_cli import cli
from test_faces_predict import scene_with_face

from fer_core.__main__ import main as cli_main
from fer_core.errors import CheckpointError
from fer_core.models.checkpoint import export, load_checkpoint, safe_torch_load, save_checkpoint
from fer_core.models.networks import build_model
from fer_core.training.runs import list_runs, read_run, write_json_atomic

# ----------------------------------------------------------------------------- payloads


class _Mkdir:
    """Unpickling this creates a folder: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class _Eval:
    """The same through eval of a source string (another route a payload takes)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.eval, (f"__import__('os').mkdir({self.marker!r})",))


def _good_raw(tmp_path: Path) -> dict:
    path = tmp_path / "good.pt"
    if not path.exists():
        torch.manual_seed(0)
        save_checkpoint(path, build_model("small").eval(), "small", mean=0.5, std=0.25)
    return torch.load(path, weights_only=True)


def _write_evil(path: Path, where: str, marker: Path, tmp_path: Path) -> None:
    raw = _good_raw(tmp_path)
    payload = (_Eval if where == "eval" else _Mkdir)(marker)
    if where in ("top", "eval"):
        torch.save({**raw, "extra": {"note": payload}}, path)
    elif where == "state_dict":  # disguised among the weights
        torch.save({**raw, "state_dict": {**raw["state_dict"], "features.0.weight": payload}}, path)
    elif where == "history":
        torch.save({**raw, "history": [{"epoch": 1}, payload]}, path)
    elif where == "whole":
        torch.save(payload, path)
    elif where == "legacy":  # torch's pre-1.6 format: a plain pickle stream, no zip container
        torch.save({**raw, "extra": payload}, path, _use_new_zipfile_serialization=False)
    elif where == "raw_pickle":
        path.write_bytes(pickle.dumps({"format": "fer_core.checkpoint", "x": payload}))
    else:
        raise AssertionError(where)


PLACES = ["top", "eval", "state_dict", "history", "whole", "legacy", "raw_pickle"]


def test_the_payload_is_live(tmp_path):
    """Control: the same file loaded unsafely does run code, so the refusals below mean something."""
    marker = tmp_path / "pwned"
    _write_evil(tmp_path / "evil.pt", "top", marker, tmp_path)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("where", PLACES)
def test_payload_anywhere_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    _write_evil(evil, where, marker, tmp_path)
    with pytest.raises(CheckpointError, match=r"refused|not a readable"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        safe_torch_load(evil)  # what resuming a run uses for state.pt
    assert not marker.exists()


def test_resuming_a_run_with_an_evil_state_is_refused(tmp_path, csv_data):
    """A run folder's state.pt is loaded on resume: a payload there is refused too."""
    from fer_core.training.recipes import get_recipe, with_overrides
    from fer_core.training.runs import DataSelection, train_run

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    _write_evil(run / "state.pt", "state_dict", marker, tmp_path)
    recipe = with_overrides(get_recipe("cpu_default"), epochs=1, device="cpu")
    with pytest.raises(CheckpointError, match="refused"):
        train_run(csv_data, recipe, run, DataSelection(limit=100))
    assert not marker.exists()


# ----------------------------------------------------------------------------- bad files


def bad_checkpoints(folder: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the words its error message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = _good_raw(tmp_path)
    good = tmp_path / "good.pt"
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, obj, message: str) -> None:
        torch.save(obj, folder / f"{name}.pt")
        out[name] = (folder / f"{name}.pt", message)

    put("wrong_arch", {**raw, "arch": "fer_vgg"}, "do not fit architecture fer_vgg")
    put("unknown_arch", {**raw, "arch": "resnet9000"}, "unknown architecture")
    put("missing_keys", {k: v for k, v in raw.items() if k not in ("state_dict", "classes")},
        "missing state_dict, classes")  # fmt: skip
    put("newer_format", {**raw, "format_version": 2}, "newer fer_core")
    put("bad_version", {**raw, "format_version": "1"}, "unknown checkpoint format version")
    put("weights_list", {**raw, "state_dict": []}, "malformed checkpoint")
    put("classes_int", {**raw, "classes": 7}, "malformed checkpoint")
    put("history_int", {**raw, "history": 3}, "malformed checkpoint")
    put("five_classes", {**raw, "classes": ["a", "b", "c", "d", "e"]}, "size mismatch")
    put("bare_state_dict", raw["state_dict"], "not a fer_core checkpoint")
    data = good.read_bytes()
    for name, cut in [("truncated", len(data) // 2), ("truncated_end", len(data) - 40)]:
        (folder / f"{name}.pt").write_bytes(data[:cut])
        out[name] = (folder / f"{name}.pt", "not a readable PyTorch checkpoint")
    (folder / "empty.pt").write_bytes(b"")
    out["empty"] = (folder / "empty.pt", "not a readable PyTorch checkpoint")
    (folder / "text.pt").write_text("weights, honest")
    out["text"] = (folder / "text.pt", "not a readable PyTorch checkpoint")
    export(load_checkpoint(good), folder / "torchscript.pt")
    out["torchscript"] = (folder / "torchscript.pt", "TorchScript export, not a checkpoint")
    (folder / "folder.pt").mkdir()
    out["folder"] = (folder / "folder.pt", "is a folder")
    return out


def test_every_bad_file_is_one_clear_error(tmp_path):
    for name, (path, message) in bad_checkpoints(tmp_path / "bad", tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        text = str(caught.value)
        assert message in text, (name, text)
        assert "\n" not in text and "Traceback" not in text, (name, text)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_cli_bad_checkpoints_exit_1_with_one_error_line(tmp_path, capsys, command):
    """What `python -m fer_core` runs (its main), for every bad file: exit 1, one `error:` line."""
    for name, (path, message) in bad_checkpoints(tmp_path / "bad", tmp_path).items():
        args = [command, "--checkpoint", str(path)]
        args += ["--data", str(CSV_PATH)] if command == "evaluate" else [str(tmp_path / "x.png")]
        assert cli_main(args) == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], (name, err)


def test_cli_subprocess_refuses_payload_and_truncation(tmp_path):
    """The real entry point: no traceback, one line, and the payload never ran."""
    marker = tmp_path / "pwned"
    _write_evil(tmp_path / "evil.pt", "state_dict", marker, tmp_path)
    bad = bad_checkpoints(tmp_path / "bad", tmp_path)
    runs = [
        (["predict", "--checkpoint", tmp_path / "evil.pt", tmp_path / "x.png"], "refused"),
        (["evaluate", "--checkpoint", bad["truncated"][0], "--data", CSV_PATH], "not a readable"),
    ]
    for args, message in runs:
        proc = cli(*args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not marker.exists()


# ----------------------------------------------------------------------------- the app


def _fake_run(runs: Path, name: str, best: Path | None) -> Path:
    """A run folder as the app lists it, with `best` copied in as its best.pt."""
    run = runs / name
    run.mkdir(parents=True)
    write_json_atomic(run / "run.json", {"arch": "small", "status": "finished",
                                         "train_config": {"epochs": 1}})  # fmt: skip
    write_json_atomic(run / "history.json", [{"epoch": 1, "val_acc": 0.3, "val_macro_f1": 0.2}])
    if best is not None:
        if best.is_dir():
            (run / "best.pt").mkdir()
        else:
            (run / "best.pt").write_bytes(best.read_bytes())
    return run


@pytest.fixture()
def app_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_APP_DIR", str(tmp_path / "app"))
    monkeypatch.setenv("FER_ICE_SERVERS", "[]")
    monkeypatch.delenv("FER_DATA", raising=False)
    return tmp_path / "app"


def _choose(at: AppTest, label_start: str, settle: bool = True) -> None:
    box = at.sidebar.selectbox[0]
    option = next(o for o in box.options if o.startswith(label_start))
    box.set_value(option)
    at.run()
    if settle:  # see test_every_sidebar_model_choice_takes_effect: a choice needs one more run
        at.run()


def test_app_model_choice_with_payload_is_refused_and_never_runs(app_dir, tmp_path, csv_data):
    marker = tmp_path / "pwned"
    _write_evil(tmp_path / "evil.pt", "state_dict", marker, tmp_path)
    _fake_run(app_dir / "runs", "20990101-000000-evil", tmp_path / "evil.pt")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/predict.py")
    at.run()
    _choose(at, "Run 20990101-000000-evil")
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.sidebar.error] + [e.value for e in at.main.error]
    assert any("refused" in e for e in errors), errors
    # the page stops with the error instead of predicting with anything
    assert not at.file_uploader
    # switching back to the shipped model, a photo predicts normally
    _choose(at, "Shipped model")
    photo = png_bytes(scene_with_face(csv_data.split("public_test").images[0]))
    at.file_uploader[0].set_value(("scene.png", photo, "image/png"))
    at.run()
    assert not at.exception and not at.error
    assert not marker.exists()


def test_every_sidebar_model_choice_takes_effect(app_dir, tmp_path):
    for name in ("a", "b"):
        save_checkpoint(tmp_path / f"{name}.pt", build_model("small"), "small", mean=0.5, std=0.25)
        _fake_run(app_dir / "runs", f"20990101-00000{name}-small", tmp_path / f"{name}.pt")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    for target in ["Run 20990101-00000a", "Shipped model", "Run 20990101-00000b"]:
        _choose(at, target, settle=False)  # one choice, one rerun: what a user's click does
        assert at.sidebar.selectbox[0].value.startswith(target), target


def test_ui_state_refuses_a_user_supplied_path(app_dir, tmp_path):
    """`ui.state` is how every page loads a model path; it answers (None, one sentence)."""
    from ui import state

    marker = tmp_path / "pwned"
    _write_evil(tmp_path / "evil.pt", "history", marker, tmp_path)
    ckpt, error = state.get_checkpoint(str(tmp_path / "evil.pt"))
    assert ckpt is None and "refused" in error
    predictor, error = state.get_predictor(str(tmp_path / "evil.pt"))
    assert predictor is None and "refused" in error
    for name, (path, message) in bad_checkpoints(tmp_path / "bad", tmp_path).items():
        ckpt, error = state.get_checkpoint(str(path))
        assert ckpt is None and message in error and "\n" not in error, (name, error)
    assert not marker.exists()


def test_app_sidebar_explains_every_bad_run_checkpoint(app_dir, tmp_path):
    bad = bad_checkpoints(tmp_path / "bad", tmp_path)
    names = {}
    for i, (name, (path, _)) in enumerate(bad.items()):
        names[name] = f"20990101-{i:06d}-{name}"
        _fake_run(app_dir / "runs", names[name], path)
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    seen = 0
    for name, (_, message) in bad.items():
        _choose(at, f"Run {names[name]}")
        assert not at.exception, (name, [e.value for e in at.exception])
        errors = [e.value for e in at.sidebar.error]
        assert len(errors) == 1 and message in errors[0], (name, errors)
        home = [w.value for w in at.main.warning]  # the home page's model card says it too
        assert any(message in w for w in home), (name, home)
        seen += 1
    assert seen == len(bad) >= 15


# ----------------------------------------------------------------------------- atomic writes

KILLS = 40


def _writer(run: Path, start: int, report: int) -> None:
    """Forked child: save best.pt and run.json forever, numbered; report each completed pair."""
    torch.set_num_threads(1)  # no OpenMP pool in a forked child
    model = build_model("small")
    i = start
    while True:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(i))
        history = [{"epoch": e, "val_acc": 0.1, "save": i} for e in range(1, i % 50 + 2)]
        save_checkpoint(run / "best.pt", model, "small", mean=0.5, std=0.25,
                        metrics={"i": i}, history=history)  # fmt: skip
        write_json_atomic(run / "run.json", {"i": i, "status": "running", "pad": "x" * (i % 5000)})
        write_json_atomic(run / "history.json", history)
        os.write(report, f"{i}\n".encode())
        i += 1


def test_writer_killed_at_random_moments_leaves_the_last_good_files(tmp_path):
    """SIGKILL a process that saves a checkpoint and the run records in a loop, many times: the
    files on disk are always a complete save (the last finished one or the one being written),
    never a mix or a fragment, and temp files left by a kill are never taken for them."""
    # the global random is reseeded by in-process training (seed_everything): draw from the OS
    seed = int(os.environ.get("FER_KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    run = tmp_path / "runs" / "20990101-000000-small"
    run.mkdir(parents=True)
    on_disk = {"best": 0, "record": 0, "history": 0}  # each file's save number after a kill
    kills = mid_write = 0
    left_behind: set[str] = set()
    for _ in range(KILLS):
        start = on_disk["best"] + 1  # the writer numbers its saves on from what is on disk
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child only stops by SIGKILL)
            try:
                os.close(read)
                _writer(run, start, write)
            finally:
                os._exit(1)
        os.close(write)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (seed, status)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        reported = [int(x) for x in b"".join(chunks).split()]
        kills += 1
        temps = {p.name for p in run.iterdir() if p.name.endswith(".tmp")}
        mid_write += bool(temps - left_behind)  # this kill cut a write short
        left_behind = temps
        assert all(t.startswith((".best.pt.", ".run.json.", ".history.json.")) for t in temps)
        # allowed: the last save known complete, or the one after it (complete but unreported)
        if reported:
            allowed = {key: {reported[-1], reported[-1] + 1} for key in on_disk}
        else:
            allowed = {key: {on_disk[key], start} for key in on_disk}
        if not (run / "best.pt").exists():
            assert on_disk["best"] == 0 and not reported, seed
            continue  # killed before the very first save completed
        ckpt = load_checkpoint(run / "best.pt")
        i = ckpt.metrics["i"]
        assert i in allowed["best"], (seed, i, allowed)
        weights = torch.cat([p.detach().flatten() for p in ckpt.model.parameters()])
        assert torch.all(weights == float(i)), (seed, i)  # one save, not a mix of two
        assert len(ckpt.history) == i % 50 + 1
        if (run / "run.json").exists():
            record = json.loads((run / "run.json").read_text())["i"]
            history = json.loads((run / "history.json").read_text())
            saves = {row["save"] for row in history}
            assert len(saves) == 1 and len(history) == min(saves) % 50 + 1, seed  # one save
            done = saves.pop()
            assert record in allowed["record"] and record <= i, (seed, record, allowed, i)
            assert done in allowed["history"] and done <= record, (seed, done, allowed)
            summary = read_run(run)  # what the app and the CLI read
            assert summary is not None and summary.status == "running"
            assert summary.epochs_done == len(history)
            on_disk["record"], on_disk["history"] = record, done
        assert [r.name for r in list_runs(tmp_path / "runs")] == [run.name]
        on_disk["best"] = i
    print(f"atomic writes: {kills} kills (seed {seed}), {mid_write} left a temp file behind, "
          f"{on_disk['best']} saves")  # fmt: skip
    assert kills == KILLS and on_disk["best"] > 0
