"""Interrupted training loses nothing: a CLI run SIGKILLed at random moments (mid-epoch, mid-write,
right after an epoch) resumes to exactly N epochs, and an app server killed mid-run keeps every
epoch it showed. A refresh, a page change and Stop never lose a finished epoch either."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CSV_PATH, REPO

from fer_core.__main__ import main as cli_main
from fer_core.models.checkpoint import load_checkpoint, safe_torch_load
from fer_core.training.runs import BEST_FILE, STATE_FILE, list_runs, read_run

EPOCHS = 10
KILLS = 8
# The app run killed with its server: long enough that it cannot finish during the kills (an
# epoch of 300 images takes 2-3 s on 2 cores)
EPOCHS_B, SERVER_KILLS = 20, 3


def _train_command(run_dir: Path, epochs: int = EPOCHS, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "fer_core", "train", "--data", str(CSV_PATH),
        "--recipe", "cpu_default", "--limit", "600", "--epochs", str(epochs),
        "--run-dir", str(run_dir), "--device", "cpu", "--quiet", *extra,
    ]  # fmt: skip


def _history_epochs(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


def _temps(run_dir: Path) -> set[str]:
    return {p.name for p in run_dir.glob(".*.tmp")} if run_dir.is_dir() else set()


def check_run_folder(run_dir: Path, epochs: int, seen: int) -> list[dict]:
    """Everything a reader can rely on after a kill; returns the recorded history."""
    summary = read_run(run_dir)
    if summary is None:  # killed before run.json was first written: nothing to lose yet
        assert seen == 0 and not (run_dir / STATE_FILE).exists()
        return []
    history = summary.history
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert len(history) >= seen, "a finished epoch was lost"
    assert summary.epochs == epochs and summary.epochs_done == len(history)
    done = len(history)
    if (run_dir / STATE_FILE).exists():
        state = safe_torch_load(run_dir / STATE_FILE)
        # state is written before history, so it may be one epoch ahead, never behind
        assert state["epoch"] in (done, done + 1), (state["epoch"], done)
        assert [h["epoch"] for h in state["history"]] == list(range(1, state["epoch"] + 1))
    else:
        assert done == 0
    if (run_dir / BEST_FILE).exists():
        best = load_checkpoint(run_dir / BEST_FILE)
        assert 1 <= best.metrics["epoch"] <= done + 1
        assert [h["epoch"] for h in best.history] == list(range(1, best.metrics["epoch"] + 1))
    assert all(t.startswith(".") and t.endswith(".tmp") for t in _temps(run_dir))
    names = [r.name for r in list_runs(run_dir.parent)]
    assert run_dir.name in names and not any(n.startswith(".") for n in names)
    return history


def _kill_at_random(proc, run_dir: Path, mode: str, rng: random.Random, pace: dict) -> str:
    """SIGKILL `proc` at a random moment of the kind `mode` names, timed by the pace measured so
    far (machines differ tenfold): each kill lets at most about one more epoch finish."""
    began, deadline = time.time(), time.time() + 300  # a fallback only: the kill happens anyway
    if mode == "delay":  # anywhere from start-up to the middle of the next epoch
        time.sleep(rng.uniform(0.1, 1.0) * pace["to_first_epoch"])
    elif mode == "mid_write":  # the moment the next epoch's files are being replaced
        before = _temps(run_dir)
        while proc.poll() is None and time.time() < deadline and not (_temps(run_dir) - before):
            time.sleep(0.002)
    elif mode == "after_epoch":  # somewhere in the epoch after the next one is recorded
        start = _history_epochs(run_dir)
        while proc.poll() is None and time.time() < deadline and _history_epochs(run_dir) == start:
            time.sleep(0.02)
        pace["to_first_epoch"] = time.time() - began
        time.sleep(rng.uniform(0.0, 0.9) * pace["epoch"])
    if proc.poll() is not None:
        return "finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    history = json.loads((run_dir / "history.json").read_text()) if _history_epochs(run_dir) else []
    if history:
        pace["epoch"] = sum(h["seconds"] for h in history) / len(history)
    return mode


def test_cli_training_survives_random_sigkills_and_resumes_to_exactly_n_epochs(tmp_path, csv_data):
    # the global random is reseeded by in-process training (seed_everything): draw from the OS
    seed = int(os.environ.get("FER_KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    run_dir = tmp_path / "runs" / "run"
    command = _train_command(run_dir)
    seen, snapshots, hits = 0, [], []
    pace = {"to_first_epoch": 8.0, "epoch": 1.0}
    rest = ["delay", "mid_write", "after_epoch"] * 3
    rng.shuffle(rest)
    modes = ["after_epoch", *rest][:KILLS]  # the first kill also measures the pace
    for i, mode in enumerate(modes):
        with open(tmp_path / f"train_{i}.log", "w") as log:
            proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            hits.append(_kill_at_random(proc, run_dir, mode, rng, pace))
        history = check_run_folder(run_dir, EPOCHS, seen)
        seen = len(history)
        snapshots.append(history)
        if hits[-1] == "finished before the kill":
            break
    final = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert final.stdout.strip().endswith(str(run_dir / BEST_FILE))
    history = check_run_folder(run_dir, EPOCHS, seen)
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1)), (seed, history)
    for earlier in snapshots:  # resumed, not restarted: every recorded epoch kept as it was
        assert history[: len(earlier)] == earlier, seed
    assert read_run(run_dir).status == "finished"
    assert safe_torch_load(run_dir / STATE_FILE)["epoch"] == EPOCHS
    assert not _temps(run_dir), "temp files of killed writers are cleared when a run resumes"
    print(f"CLI kills (seed {seed}): {hits}; epochs recorded after each: "
          f"{[len(s) for s in snapshots]}")  # fmt: skip


def test_resuming_with_other_settings_is_one_clear_line(tmp_path, csv_data, capsys):
    """`--run-dir` of an existing run with another architecture or optimizer used to end in a
    traceback (or a KeyError mid-epoch); now it is refused before training, in one line."""
    run_dir = tmp_path / "run"
    assert cli_main(_train_command(run_dir, 1)[3:]) == 0
    capsys.readouterr()
    for extra, what in [(["--arch", "seed_cnn4_fc256"], "arch"), (["--optimizer", "sgd"],
                        "optimizer"), (["--epochs", "3"], "epochs")]:  # fmt: skip
        assert cli_main(_train_command(run_dir, 1, *extra)[3:]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and what in err[0], err
    assert read_run(run_dir).epochs_done == 1 and read_run(run_dir).status == "finished"
    assert cli_main(_train_command(run_dir, 1, "--device", "auto")[3:]) == 0  # device may change


def test_short_onecycle_runs_train(csv_data):
    """A run of exactly 4 optimizer steps (e.g. 1 epoch of 600 images at batch 128, what the app
    allows) crashed in OneCycleLR with a ZeroDivisionError; every short length trains now."""
    from dataclasses import replace

    from fer_core.models.networks import build_model
    from fer_core.training.recipes import get_recipe
    from fer_core.training.runs import DataSelection, select_data
    from fer_core.training.trainer import Trainer

    x, y, vx, vy = select_data(csv_data, DataSelection(limit=64))
    for steps in (3, 4, 5):
        cfg = replace(get_recipe("cpu_default").config, epochs=steps, batch_size=64, device="cpu")
        result = Trainer(build_model("small"), cfg, x[:64], y[:64], vx[:32], vy[:32]).fit()
        assert len(result.history) == steps and result.history[-1].lr >= 0


# ----------------------------------------------------------------------------- the app


@pytest.fixture()
def app_env(tmp_path):
    return {
        **os.environ,
        "FER_DATA": str(CSV_PATH),
        "FER_ICE_SERVERS": "[]",
        "FER_APP_DIR": str(tmp_path / "app"),
    }


def epochs_done(page) -> int:
    """Finished epochs in the live view (0 before the first one)."""
    metric = page.locator("[data-testid=stMetric]", has_text="Epochs done")
    if metric.count() == 0:
        return 0
    return int(re.search(r"(\d+)/\d+", metric.first.inner_text()).group(1))


def wait_for_epochs(page, at_least: int, seconds: float = 300) -> int:
    """Poll the live view until it shows `at_least` finished epochs; the count never goes down."""
    deadline, last = time.time() + seconds, 0
    while time.time() < deadline:
        now = epochs_done(page)
        assert now >= last, f"the live view went from {last} to {now} finished epochs"
        last = now
        if now >= at_least:
            return now
        time.sleep(0.5)
    raise AssertionError(f"only {last} epochs after {seconds} s")


def past_runs(page, rows: int) -> dict[str, str]:
    """Run name -> status, read from the Past runs table's grid cells (drawn on a canvas, with
    the cells mirrored for accessibility once the grid has rendered)."""
    page.get_by_text("Past runs").scroll_into_view_if_needed()
    cells: list[str] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(cells) < 8 * rows:
        time.sleep(0.5)
        cells = page.locator("[data-testid=stDataFrame] [role=gridcell]").all_inner_texts()
    return {cells[i]: cells[i + 2] for i in range(0, len(cells) - 2, 8)}


def test_app_run_survives_refresh_page_change_stop_and_server_kills(app_env, browser, tmp_path):
    from test_browser import ERRORS, open_page, settle, start_server, start_training

    runs_root = Path(app_env["FER_APP_DIR"]) / "runs"
    proc, url = start_server(app_env, tmp_path / "server.log")
    try:
        # 1. a run watched through a refresh and a page change, then stopped
        page = open_page(browser, url, "train")
        start_training(page, 40, 300)
        first = wait_for_epochs(page, 1)
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector("h1:has-text('Train')", timeout=60_000)
        page.wait_for_selector("text=Epochs done", timeout=120_000)
        after_refresh = wait_for_epochs(page, first)  # reattached, nothing went back
        page.get_by_role("link", name="Predict").click()
        page.wait_for_selector("h1:has-text('Predict')", timeout=60_000)
        page.get_by_role("link", name="Train").click()
        page.wait_for_selector("h1:has-text('Train')", timeout=60_000)
        shown = wait_for_epochs(page, after_refresh + 1)  # still training after both
        page.get_by_role("button", name="⏹ Stop", exact=True).click()
        # after the reload this is another session's run: Stop asks first
        page.get_by_role("button", name="Yes, stop it").click(timeout=60_000)
        page.wait_for_selector("text=Stopped after", timeout=120_000)
        stopped = int(re.search(r"Stopped after (\d+)", page.inner_text("body")).group(1))
        (run_a,) = list(runs_root.iterdir())
        summary = read_run(run_a)
        assert stopped >= shown and summary.epochs_done == stopped, (stopped, shown)
        assert summary.status == "stopped" and load_checkpoint(run_a / BEST_FILE)
        assert page.locator(ERRORS).count() == 0

        # 2. a second run, the server SIGKILLed at a random moment while it trains, restarted,
        #    and the run resumed from the Train page: SERVER_KILLS times, then to the end
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector("h1:has-text('Train')", timeout=60_000)
        settle(page)
        # Epochs of 1,500 faces (a few seconds each): with 300 faces an idle machine trained 4-5
        # epochs per kill cycle and finished all 20 before the last kill.
        start_training(page, EPOCHS_B, 1500)
        run_b, shown = None, 0
        rng = random.SystemRandom()
        for kill in range(SERVER_KILLS + 1):
            if kill:  # a restarted server shows the cut-off run as interrupted; resume it
                proc, url = start_server(app_env, tmp_path / f"server{kill}.log")
                page = open_page(browser, url, "train")
                settle(page, 120)
                assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
                statuses = past_runs(page, 2)
                assert statuses == {run_a.name: "stopped", run_b.name: "interrupted"}, statuses
                page.get_by_role("button", name="▶ Resume").click()
                page.wait_for_selector("text=Epochs done", timeout=120_000)
                assert epochs_done(page) >= shown  # the resumed run shows its earlier epochs
            if kill == SERVER_KILLS:
                break
            shown = wait_for_epochs(page, shown + 1)
            assert shown < EPOCHS_B, "the run finished before the kill: lower SERVER_KILLS"
            time.sleep(rng.uniform(0.0, 2.0))  # somewhere in the next epoch
            shown = epochs_done(page)
            proc.kill()
            proc.wait(30)
            page.context.close()
            if run_b is None:
                (run_b,) = [p for p in runs_root.iterdir() if p != run_a]
            history = check_run_folder(run_b, EPOCHS_B, shown)  # every epoch shown is on disk
            assert len(history) >= shown >= 1
            assert read_run(run_b).status == "running"  # as the kill left it
        page.wait_for_selector("text=Finished", timeout=600_000)
        summary = read_run(run_b)
        assert summary.status == "finished"
        assert [h["epoch"] for h in summary.history] == list(range(1, EPOCHS_B + 1))
        assert load_checkpoint(run_b / BEST_FILE).metrics["epoch"] <= EPOCHS_B
        assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
        page.context.close()
    finally:
        proc.kill()
        proc.wait(30)
