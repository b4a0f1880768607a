"""The Train page's guidance before and during a run: the time estimate from timed batches, the
warning when validation stays at chance, and run statuses people can read."""

from __future__ import annotations

from conftest import CSV_PATH
from test_app import by_label, open_page

from ui import training
from ui.training import LiveRun, recipe_from_form, stalled_at_chance, status_of


def test_estimate_times_batches_and_warns_when_long(tmp_path, monkeypatch, csv_data):
    monkeypatch.setenv("FER_APP_DIR", str(tmp_path / "app"))
    monkeypatch.setattr(training, "LONG_RUN_S", 1e9)  # an info, however slow the machine
    at = open_page("app_pages/train.py", str(CSV_PATH))
    by_label(at.number_input, "Epochs").set_value(2)
    by_label(at.number_input, "Training subset (images)").set_value(1000)
    by_label(at.selectbox, "Device").set_value("cpu")
    by_label(at.button, "⏱ Estimate time").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [m.value for m in at.info]
    assert any("on `cpu`: 2 epochs of 7 batches at" in s for s in shown), shown
    assert not list((tmp_path / "app" / "runs").glob("*")), "an estimate starts no run"

    # The live run shown below the form belongs to the server (one manager per process, so an
    # earlier test's run may be on view with warnings of its own): only the estimate's are checked.
    assert not any("That is long" in w.value for w in at.warning), [w.value for w in at.warning]

    # Beyond the page's limit (30 min; here 0 s, so that no machine is too fast for the test)
    # the estimate is a warning.
    monkeypatch.setattr(training, "LONG_RUN_S", 0.0)
    by_label(at.button, "⏱ Estimate time").click()
    at.run()
    assert any("That is long" in w.value for w in at.warning), [w.value for w in at.warning]


def test_stalled_at_chance_after_three_epochs_only():
    history = [{"val_acc": 0.249}, {"val_acc": 0.25}, {"val_acc": 0.251}]
    assert stalled_at_chance(LiveRun(history=history, chance=0.25))
    assert not stalled_at_chance(LiveRun(history=history[:2], chance=0.25))  # too early to say
    assert not stalled_at_chance(LiveRun(history=[*history, {"val_acc": 0.31}], chance=0.25))


def test_a_run_recorded_as_running_but_not_training_reads_as_interrupted():
    live = LiveRun(status="running", run_dir="/runs/a")
    assert status_of("running", "/runs/a", live) == "running"
    assert status_of("running", "/runs/b", live) == "interrupted"
    assert status_of("finished", "/runs/b", live) == "finished"


def test_form_values_left_as_the_recipe_shows_keep_its_exact_values():
    from fer_core.training.recipes import get_recipe

    recipe = get_recipe("shipped")
    a = recipe.config.augment
    shown = {"jitter": max(a.brightness, a.contrast), "crop": True, "rotation": int(a.rotation)}
    form = {**shown, "flip": True, "translate": a.translate, "noise": a.noise,
            "erasing": a.erasing, "epochs": 180, "batch": 128, "lr": 0.1, "optimizer": "sgd",
            "scheduler": "cosine", "weight_decay": 5e-4, "smoothing": 0.1, "mixup": 0.0,
            "patience": 0, "device": "auto", "limit": 100, "val": "public_test",
            "arch": "fer_vgg", "weighting": "none"}  # fmt: skip
    chosen, selection = recipe_from_form(recipe, form, shown, n_train=28709)
    assert chosen.config == recipe.config and chosen.arch_kwargs == {"branches": 4}
    assert selection.limit == 100 and selection.val == "public_test"
    form["jitter"], form["rotation"] = 0.1, 5
    changed = recipe_from_form(recipe, form, shown, n_train=28709)[0].config.augment
    assert (changed.brightness, changed.contrast, changed.rotation) == (0.1, 0.1, 5.0)
    assert changed.crop_scale == a.crop_scale  # untouched
