"""Every CLI command through a real subprocess, on both real data files and generated fixtures."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import CSV_PATH, REPO, ZIP_PATH, cli, modules_imported_by
from test_faces_predict import scene_with_face

from fer_core.labels import CLASSES
from fer_core.models.checkpoint import load_checkpoint


@pytest.mark.parametrize("path", [CSV_PATH, ZIP_PATH])
def test_info_json(path):
    out = json.loads(cli("info", "--data", path, "--json").stdout)
    assert out["splits"]["train"]["happy"] == 7215
    assert out["splits"]["public_test"]["disgust"] == 56
    assert list(out["splits"]["train"]) == list(CLASSES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = cli(
        "train",
        "--data",
        ZIP_PATH,
        "--arch",
        "small",
        "--epochs",
        "1",
        "--limit",
        "300",
        "--out",
        out,
        "--device",
        "cpu",
        "--seed",
        "1",
    )
    ckpt = proc.stdout.strip().splitlines()[-1]
    assert ckpt.endswith("best.pt")
    assert "epoch   1" in proc.stderr
    return ckpt


@pytest.mark.parametrize("path", [CSV_PATH, ZIP_PATH])
def test_evaluate_json(trained, path):
    out = json.loads(
        cli(
            "evaluate",
            "--checkpoint",
            trained,
            "--data",
            path,
            "--split",
            "public_test",
            "--no-tta",
            "--json",
        ).stdout
    )
    assert out["n"] == 3589 and 0 <= out["accuracy"] <= 1 and 0 <= out["macro_f1"] <= 1
    assert set(out["per_class"]) == set(CLASSES)
    cm = np.array(out["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == 3589
    assert out["accuracy"] == pytest.approx(np.trace(cm) / 3589)


def test_evaluate_missing_split_is_one_clear_line(trained):
    proc = cli(
        "evaluate",
        "--checkpoint",
        trained,
        "--data",
        CSV_PATH,
        "--split",
        "private_test",
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_predict_json(trained, tmp_path, csv_data):
    photo = tmp_path / "scene.png"
    cv2.imwrite(str(photo), scene_with_face(csv_data.split("public_test").images[0]))
    crop = tmp_path / "crop.jpg"
    cv2.imwrite(str(crop), csv_data.split("public_test").images[1])
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    proc = cli("predict", "--checkpoint", trained, "--json", photo, junk)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["image"] == str(photo) and isinstance(lines[0]["faces"], list)
    for face in lines[0]["faces"]:
        assert len(face["box"]) == 4 and face["label"] in CLASSES
        assert abs(sum(face["probs"].values()) - 1) < 1e-3
    assert "error" in lines[1] and "not a readable image" in lines[1]["error"]
    single = json.loads(
        cli("predict", "--checkpoint", trained, "--no-detect", "--json", crop).stdout
    )
    assert len(single["faces"]) == 1 and single["faces"][0]["box"] is None
    only_bad = cli("predict", "--checkpoint", trained, junk, check=False)
    assert only_bad.returncode == 1 and "Traceback" not in only_bad.stderr


def test_export(trained, tmp_path):
    out = tmp_path / "model.ts"
    cli("export", "--checkpoint", trained, "--format", "torchscript", "--out", out)
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "--data", "/nonexistent.csv"], "not found"),
        (["evaluate", "--checkpoint", "/nonexistent.pt", "--data", CSV_PATH], "not found"),
        (["train", "--data", "/etc/hostname", "--epochs", "1"], "not a FER2013 dataset"),
        (
            ["train", "--data", CSV_PATH, "--limit", "64", "--width", "0", "--device", "cpu"],
            "width must be a positive whole number",
        ),
        (
            ["train", "--data", CSV_PATH, "--arch", "small", "--branches", "2", "--device", "cpu"],
            "small takes no branches option",
        ),
    ],
)
def test_bad_input_is_one_line_exit_1(args, message):
    proc = cli(*args, check=False)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_finalize_stores_the_evaluation_it_reproduces(trained, tmp_path):
    out = tmp_path / "final.pt"
    stored = json.loads(
        cli("finalize", "--checkpoint", trained, "--data", CSV_PATH, "--out", out, "--half").stdout
    )
    again = json.loads(cli("evaluate", "--checkpoint", out, "--data", CSV_PATH, "--json").stdout)
    assert stored["accuracy"] == again["accuracy"] and stored["tta"] == again["tta"] == "flip"
    assert stored["confusion_matrix"] == again["confusion_matrix"]
    assert stored["precision"] == again["precision"] == "int8"  # the default on x86 CPUs
    fp32 = load_checkpoint(out).metrics["public_test_fp32"]
    exact = json.loads(
        cli(
            "evaluate", "--checkpoint", out, "--data", CSV_PATH, "--json", "--precision", "fp32"
        ).stdout
    )
    assert fp32["precision"] == exact["precision"] == "fp32"
    assert fp32["confusion_matrix"] == exact["confusion_matrix"]


def test_kaggle_download_offline_is_one_clear_line(tmp_path):
    """The optional Kaggle download fails fast and clearly without a network. A proxy on a closed
    loopback port stands in for "offline", so the test never reaches the internet."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "KAGGLE_USERNAME": "nobody",
        "KAGGLE_KEY": "0" * 32,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fer_core", "download"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Kaggle download")
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.zip"))


def test_the_command_line_imports_no_scipy_before_a_command_needs_it():
    """Building the parser (every command's options) leaves SciPy to the one command that uses
    it, `video`'s face tracking: importing it cost 0.8 s of every command's start on 2 cores."""
    code = "from fer_core.cli.main import build_parser; build_parser()"
    assert modules_imported_by(code, "scipy") == []


@pytest.mark.parametrize(
    "extra, arch, arch_kwargs",
    [
        # another architecture drops the recipe's own settings (branches belong to fer_vgg)
        (["--arch", "seed_cnn3_colab"], "seed_cnn3_colab", {}),
        (["--width", "8"], "fer_vgg", {"branches": 4, "width": 8}),
        (["--width", "8", "--branches", "2"], "fer_vgg", {"branches": 2, "width": 8}),
        (
            ["--width", "8", "--shared-stages", "0"],
            "fer_vgg",
            {"branches": 4, "width": 8, "shared_stages": 0},
        ),
    ],
)
def test_train_shipped_recipe_with_architecture_options(tmp_path, extra, arch, arch_kwargs):
    run = tmp_path / "run"
    args = ["--recipe", "shipped", "--epochs", "1", "--limit", "64", "--device", "cpu"]
    cli("train", "--data", CSV_PATH, *args, "--run-dir", run, "--quiet", *extra)
    record = json.loads((run / "run.json").read_text())
    assert record["arch"] == arch and record["arch_kwargs"] == arch_kwargs


def test_train_fine_tunes_a_checkpoint_on_ferplus_soft_labels(tmp_path):
    from conftest import FERPLUS_PATH

    run = tmp_path / "ft"
    args = ["--recipe", "shipped_fast", "--epochs", "1", "--limit", "64", "--device", "cpu"]
    init = REPO / "checkpoints" / "fer_model_fast.pt"
    cli("train", "--data", CSV_PATH, *args, "--run-dir", run, "--quiet", "--init", init,
        "--ferplus", FERPLUS_PATH, "--ferplus-weight", "0.25")  # fmt: skip
    record = json.loads((run / "run.json").read_text())
    assert record["init"] == "fer_model_fast" and record["arch_kwargs"] == {"width": 32}
    assert record["soft_labels"]["weight"] == 0.25
    for bad, message in (
        (["--init", init, "--width", "16"], "--init takes the architecture"),
        (["--ferplus", tmp_path / "none.csv"], "no FER+ file"),
        (["--ferplus", FERPLUS_PATH, "--ferplus-weight", "2"], "between 0 and 1"),
    ):
        proc = cli("train", "--data", CSV_PATH, *args, "--run-dir", tmp_path / "x", *bad,
                   check=False)  # fmt: skip
        assert proc.returncode != 0 and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_interpolate_then_finalize(trained, tmp_path):
    """The halfway checkpoint between a run and itself is the run; finalize then calibrates and
    evaluates it like any checkpoint and stores what it printed. Its default evaluation runs in
    int8 where the CPU has the kernels, so the run's (fp32) confusion matrix is compared with the
    fp32 evaluation finalize stores beside it: int8 may move a borderline face."""
    mid, out = tmp_path / "mid.pt", tmp_path / "final.pt"
    proc = cli("interpolate", "--start", trained, "--end", trained, "--alpha", "0.5", "--out", mid)
    assert "0.5 of the way" in proc.stdout
    printed = json.loads(
        cli("finalize", "--checkpoint", mid, "--data", CSV_PATH, "--out", out).stdout
    )
    again = json.loads(
        cli("evaluate", "--checkpoint", trained, "--data", CSV_PATH, "--json").stdout
    )
    metrics = load_checkpoint(out).metrics
    assert metrics["public_test"] == printed
    assert again["precision"] == "fp32"  # a run's checkpoint carries no int8 record
    fp32 = metrics["public_test_fp32"] if printed["precision"] == "int8" else printed
    assert fp32["precision"] == "fp32"
    assert fp32["confusion_matrix"] == again["confusion_matrix"]
    bad = cli("interpolate", "--start", trained, "--end", trained, "--alpha", "2", "--out", mid,
              check=False)  # fmt: skip
    assert bad.returncode == 1 and "alpha is 2" in bad.stderr and "Traceback" not in bad.stderr
