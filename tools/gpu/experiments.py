"""Build bench/results/experiments.json, the record of every training run tried for the shipped
models: each run's exact command, recipe version, hardware, and the numbers computed from its
per-epoch history (and, for photo fine-tuning, from its evaluations). No number is typed in here.

    python tools/gpu/experiments.py                   # stage-1 histories from bench/results/sweeps
    python tools/gpu/experiments.py --rev REV         # ... as they are in git revision REV
    python tools/gpu/experiments.py --photo-runs DIR  # fine-tuning results as launch.sh leaves them
                                                      # in $R: NAME/history.json, NAME/run.json,
                                                      # NAME.public.json, .taiwanese.json, .ckplus.json

The histories of the runs that ship are kept in bench/results/histories/ and read from there. The
other stage-1 histories were removed from the tree once recorded here: `--rev` reads them from a
git revision that still has bench/results/sweeps/. A run whose inputs are not given keeps its
entry from the existing output file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "experiments.json"
SWEEPS = "bench/results/sweeps"
HISTORIES = "bench/results/histories"
TRAIN = "python -m fer_core train"
STAGE1, STAGE2 = "fer2013 recipe", "photo fine-tuning"

# What `--recipe shipped` meant at each recipe version (git commit of fer_core/recipes.py); flags
# in a run's command override it.
RECIPE_VERSIONS = {
    "1e04d7a": "fer_resnet, SGD-Nesterov lr 0.1 with warm-up and cosine decay, weight decay 5e-4, "
    "label smoothing 0.1, strong augmentation, mixup 0.2 + cutmix 1.0, EMA 0.999, flip TTA, "
    "100 epochs",
    "2a6e6db": "fer_vgg, one network: the same without mixup and cutmix, 180 epochs",
    "8c8e5b4": "fer_vgg with branches=3, otherwise as 2a6e6db",
    "15c28e3": "fer_vgg with branches=4, otherwise as 2a6e6db (the current `shipped`; "
    "`shipped_fast` is fer_vgg width 32, 400 epochs)",
}


@dataclass(frozen=True)
class Round:
    """Runs launched together by one script: `template` is that script's train command with
    {name} and {flags} for each run's own part."""

    prefix: str
    source: str
    hardware: str
    recipe_version: str
    template: str
    runs: dict[str, str]
    runs_sharing_gpu: int | None = None
    notes: dict[str, str] = field(default_factory=dict)


ROUNDS = [
    Round(
        prefix="round1",
        source="tools/gpu/sweep.sh (removed)",
        hardware="H200",
        recipe_version="1e04d7a",
        template="--data .gpu/fer.zip --quiet --run-dir /tmp/sweep/{name} --epochs 50 {flags}",
        runs={
            "A": "--recipe shipped",
            "B": "--recipe shipped --mixup 0 --cutmix 0",
            "C": "--recipe shipped --arch fer_vgg",
            "D": "--recipe shipped --optimizer adamw --lr 2e-3 --weight-decay 0.05",
        },
        runs_sharing_gpu=4,
        notes={
            "*": "run under `timeout 545`; the GPU model is not recorded for round 1 (rounds "
            "2 and 3, launched the same way, ran on one H200)"
        },
    ),
    Round(
        prefix="round2",
        source="tools/gpu/sweep2.sh (removed)",
        hardware="H200",
        recipe_version="1e04d7a",
        template="--data .gpu/fer.zip --quiet --half --run-dir /tmp/sw2/{name} --epochs 180 {flags}",
        runs={
            "M0": "--recipe shipped --arch fer_vgg --seed 0",
            "M1": "--recipe shipped --arch fer_vgg --seed 1",
            "N0": "--recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --seed 0",
            "N1": "--recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --seed 1",
        },
        runs_sharing_gpu=4,
        notes={
            "N0": "command also stored in checkpoints/fer_model.pt at git 2a6e6db "
            "(extra.command), which shipped this run"
        },
    ),
    Round(
        prefix="round3",
        source="tools/gpu/sweep3.sh (removed)",
        hardware="H200",
        recipe_version="1e04d7a",
        template="--data .gpu/fer.zip --quiet --half --run-dir /tmp/sw3/{name} {flags}",
        runs={
            "A": "--recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --epochs 400 --seed 0",
            "A2": "--recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --epochs 400 --seed 0",
            "B": "--recipe shipped --arch fer_vgg --mixup 0 --cutmix 0 --epochs 600 --seed 0",
            "E": "--recipe shipped --arch fer_vgg --width 32 --mixup 0 --cutmix 0 --epochs 400 "
            "--seed 0",
        },
        runs_sharing_gpu=4,
        notes={
            "A2": "the same command as round3_A (repeatability)",
            "E": "command also stored in checkpoints/fer_model_fast.pt at git 2a6e6db..b02e34d "
            "(extra.command)",
        },
    ),
    Round(
        prefix="round4",
        source="tools/gpu/round4.sh (removed)",
        hardware="H100",
        recipe_version="2a6e6db",
        template="--data .gpu/fer.zip --quiet --half --run-dir /tmp/r4/{name} {flags}",
        runs={
            **{f"own_{i}": f"--recipe seed00{i}" for i in range(5)},
            **{
                f"ours_{i}": f"--recipe shipped --arch {arch}"
                for i, arch in enumerate(
                    [
                        "seed_cnn4_fc512",
                        "seed_cnn3_colab",
                        "seed_vgg6_unpadded",
                        "seed_cnn4_fc256",
                        "seed_cnn4_dropout",
                    ]
                )
            },
            "K1": "--recipe shipped --sam 0.05",
            "K4": "--recipe shipped --width 96",
        },
        runs_sharing_gpu=14,
    ),
    Round(
        prefix="repeat_h100",
        source="checkpoints/README.md (Repeatability)",
        hardware="H100",
        recipe_version="2a6e6db",
        template="{flags}",
        runs={"R1": "--recipe shipped", "R2": "--recipe shipped"},
        notes={
            "*": "the same command twice; only `--recipe shipped` is recorded: the data path, "
            "run folder, --half and whether the two shared the GPU are unknown"
        },
    ),
    Round(
        prefix="round5",
        source="tools/gpu/round5.sh (removed)",
        hardware="H100",
        recipe_version="2a6e6db",
        template="--data .gpu/fer.zip --quiet --run-dir /tmp/r5/{name} {flags}",
        runs={
            "D1": "--recipe shipped --distill 0.5 --distill-temperature 4",
            "D2": "--recipe shipped --distill 0.7",
        },
        runs_sharing_gpu=2,
    ),
    Round(
        prefix="round6",
        source="tools/gpu/round6.sh (removed)",
        hardware="H100",
        recipe_version="2a6e6db",
        template="--data .gpu/fer.zip --quiet --run-dir /tmp/r6/{name} {flags}",
        runs={"P1": "--recipe shipped --peers 3 --distill 0.5 --distill-temperature 2"},
        runs_sharing_gpu=2,
        notes={"P1": "shared the GPU with P2 (--distill 0.9), stopped at epoch 46, no history"},
    ),
    Round(
        prefix="round7b",
        source="tools/gpu/round7b.sh (removed)",
        hardware="H100",
        recipe_version="2a6e6db",
        template="--data .gpu_all/fer.zip --quiet --run-dir /tmp/r7b/{name} {flags} --half",
        runs={"B3": "--recipe shipped --branches 3"},
        runs_sharing_gpu=1,
        notes={
            "B3": "command also stored in checkpoints/fer_model.pt at git 8c8e5b4 "
            "(extra.command), which shipped this run"
        },
    ),
    Round(
        prefix="round8",
        source="tools/gpu/round8.sh (removed)",
        hardware="H200",
        recipe_version="8c8e5b4",
        template="--data .gpu_all/fer.zip --quiet --run-dir /tmp/r8/{name} {flags} --half",
        runs={
            "B4": "--recipe shipped --branches 4",
            "B6w48": "--recipe shipped --branches 6 --width 48",
            "B6w48s1": "--recipe shipped --branches 6 --width 48 --shared-stages 1",
            "B8w40s1": "--recipe shipped --branches 8 --width 40 --shared-stages 1",
        },
        runs_sharing_gpu=1,
        notes={
            "*": "four runs at once on a 4-GPU machine, each alone on its GPU "
            "(CUDA_VISIBLE_DEVICES=0..3)"
        },
    ),
    Round(
        prefix="round8b",
        source="tools/gpu/round8b.sh (removed)",
        hardware="H100",
        recipe_version="15c28e3",
        template="--data .gpu_all/fer.zip --quiet --run-dir /tmp/r8b/{name} {flags} --half",
        runs={"B4": "--recipe shipped"},
        runs_sharing_gpu=1,
        notes={
            "B4": "command also stored in checkpoints/fer_model.pt at git 15c28e3..b02e34d "
            "(extra.command)"
        },
    ),
    Round(
        prefix="round8c",
        source="checkpoints/README.md (round 8c)",
        hardware="H100",
        recipe_version="15c28e3",
        template="{flags}",
        runs={"B5": "--recipe shipped --branches 5"},
        notes={
            "B5": "launched by hand; only `--recipe shipped --branches 5` is recorded: the data "
            "path, run folder and --half are unknown"
        },
    ),
]

# Runs whose history ships: kept in the tree under a descriptive name.
KEPT = {
    "round8b_B4": ("fer_model_stage1.json", "stage 1 of checkpoints/fer_model.pt"),
    "round3_E": ("fer_model_fast_stage1.json", "stage 1 of checkpoints/fer_model_fast.pt"),
}
SHIPPED_STAGE2 = {
    "D_fp35pa": (
        "fer_model_stage2.json",
        "stage 2 of checkpoints/fer_model.pt: the shipped file is this command run again alone "
        "(per-epoch metrics identical, timings not); the kept history is that second run's",
    ),
    "F_fp25": (
        "fer_model_fast_stage2.json",
        "stage 2 of checkpoints/fer_model_fast.pt: the shipped file is this command run again "
        "beside the default model's (per-epoch metrics identical, timings not); the kept history "
        "is this run's",
    ),
}
PHOTO_NOTES = {
    "D_fp100": "stopped by hand at epoch 4, PublicTest far below the 73.0% floor; not scored",
}

WHAT = (
    "Every training run tried for the shipped models, one entry each. stage 'fer2013 recipe' "
    "trains from scratch on FER2013 Training; stage 'photo fine-tuning' continues a stage-1 "
    "checkpoint (--init) for real photos. command: the exact train command (run from the "
    "repository root on the GPU machine); `--recipe shipped` means the recipe at recipe_version "
    "(see recipe_versions), the flags after it override it. Computed from each run's per-epoch "
    "history: epochs_run; best_public_test, the highest PublicTest accuracy validated during "
    "training (fp32 EMA weights, the recipe's TTA), at best_epoch, with best_macro_f1 there; "
    "checkpoint_epoch where best.pt holds another epoch (a recipe that monitors val_loss); "
    "final_train_acc, on augmented batches; wall_s, the sum of the per-epoch seconds (training "
    "plus validation, waiting for runs that share the GPU included, start-up excluded). For photo "
    "fine-tuning also `python -m fer_core evaluate` of each best-epoch fp16 file with the default "
    "settings (flip): public_test_evaluate, taiwanese_dev (on the 48x48 crops the photo pipeline "
    "cut, one per photo, --no-detect) and ckplus48_dev (--no-detect); those candidates trained "
    "together on one H200. Built by tools/gpu/experiments.py; the histories of the shipped runs "
    "are in bench/results/histories/."
)


def _round4(x: float) -> float:
    return round(float(x), 4)


def summarise(history: list[dict]) -> dict:
    """The numbers of one run, from its per-epoch history."""
    best = max(history, key=lambda e: e["val_acc"])  # the first epoch at the maximum
    marked = [e["epoch"] for e in history if e.get("is_best")]
    out = {
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "best_public_test": _round4(best["val_acc"]),
        "best_macro_f1": _round4(best["val_macro_f1"]),
        "final_train_acc": _round4(history[-1]["train_acc"]),
    }
    if marked and marked[-1] != best["epoch"]:
        out["checkpoint_epoch"] = marked[-1]
    if all(isinstance(e.get("seconds"), int | float) for e in history):
        out["wall_s"] = round(sum(e["seconds"] for e in history), 1)
    return out


def read_history(name: str, rev: str | None) -> list[dict] | None:
    if name in KEPT:
        return json.loads((ROOT / HISTORIES / KEPT[name][0]).read_text())
    path = f"{SWEEPS}/{name}.json"
    if rev:
        shown = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True
        )
        return json.loads(shown.stdout) if shown.returncode == 0 else None
    file = ROOT / path
    return json.loads(file.read_text()) if file.exists() else None


def stage1_runs(rev: str | None, previous: dict[str, dict]) -> list[dict]:
    runs = []
    for rnd in ROUNDS:
        for short, flags in rnd.runs.items():
            name = f"{rnd.prefix}_{short}"
            history = read_history(name, rev)
            if history is None:
                if name not in previous:
                    sys.exit(f"no history for {name}: pass --rev with a revision that has {SWEEPS}")
                print(f"{name}: no history given, entry kept", file=sys.stderr)
                runs.append(previous[name])
                continue
            entry = {
                "name": name,
                "stage": STAGE1,
                "command": f"{TRAIN} {rnd.template.format(name=short, flags=flags)}",
                "command_source": rnd.source,
                "recipe_version": rnd.recipe_version,
                "hardware": rnd.hardware,
            }
            if rnd.runs_sharing_gpu:
                entry["runs_sharing_gpu"] = rnd.runs_sharing_gpu
            entry.update(summarise(history))
            if name in KEPT:
                entry["history"] = f"{HISTORIES}/{KEPT[name][0]}"
                entry["ships"] = KEPT[name][1]
            note = "; ".join(n for n in (rnd.notes.get("*"), rnd.notes.get(short)) if n)
            if note:
                entry["note"] = note
            runs.append(entry)
    return runs


def _accuracy(path: Path) -> float | None:
    return _round4(json.loads(path.read_text())["accuracy"]) if path.exists() else None


def stage2_runs(photo_runs: Path) -> list[dict]:
    runs = []
    for history_file in sorted(photo_runs.glob("*/history.json")):
        run_dir = history_file.parent
        name = run_dir.name
        record = json.loads((run_dir / "run.json").read_text())
        entry = {
            "name": name,
            "stage": STAGE2,
            "command": record["command"],
            "command_source": "the run's run.json",
            "recipe_version": "15c28e3",
            "hardware": "H200",
        }
        entry.update(summarise(json.loads(history_file.read_text())))
        scores = {
            "public_test_evaluate": _accuracy(photo_runs / f"{name}.public.json"),
            "taiwanese_dev": _accuracy(photo_runs / f"{name}.taiwanese.json"),
            "ckplus48_dev": _accuracy(photo_runs / f"{name}.ckplus.json"),
        }
        entry.update({k: v for k, v in scores.items() if v is not None})
        if name in SHIPPED_STAGE2:
            entry["history"] = f"{HISTORIES}/{SHIPPED_STAGE2[name][0]}"
            entry["ships"] = SHIPPED_STAGE2[name][1]
        if name in PHOTO_NOTES:
            entry["note"] = PHOTO_NOTES[name]
        runs.append(entry)
    return runs


def epoch_times(rev: str | None, previous: dict | None) -> dict:
    name = "round4_epoch_times_h100"
    path = f"{SWEEPS}/{name}.json"
    if rev:
        shown = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True
        )
        seconds = json.loads(shown.stdout) if shown.returncode == 0 else None
    else:
        seconds = json.loads((ROOT / path).read_text()) if (ROOT / path).exists() else None
    if seconds is None:
        if previous is None:
            sys.exit(f"no {path}: pass --rev with a revision that has it")
        return previous
    return {
        "what": "seconds of one epoch (training plus PublicTest validation) with each "
        "configuration alone on the H100, the last of 3 epochs; own_i / ours_i are the seed "
        "comparison's runs (round4_own_i, round4_ours_i), shipped the one-network fer_vgg recipe "
        "of recipe version 2a6e6db, K1 it with SAM 0.05, K3 width 96 with SAM 0.05, K4 width 96",
        "command": "python -m tools.gpu.epoch_times --data .gpu/fer.zip "
        "--extra K1:64:0.05 K3:96:0.05 K4:96:0",
        "hardware": "H100",
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help=f"read the stage-1 histories from {SWEEPS} in this revision")
    parser.add_argument("--photo-runs", type=Path, help="fine-tuning results folder (launch.sh $R)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous = {r["name"]: r for r in old.get("runs", [])}
    runs = stage1_runs(args.rev, previous)
    if args.photo_runs:
        runs += stage2_runs(args.photo_runs)
    else:
        kept = [r for r in old.get("runs", []) if r["stage"] == STAGE2]
        print(f"no --photo-runs: {len(kept)} fine-tuning entries kept", file=sys.stderr)
        runs += kept
    record = {
        "what": WHAT,
        "recipe_versions": RECIPE_VERSIONS,
        "runs": runs,
        "epoch_times_h100": epoch_times(args.rev, old.get("epoch_times_h100")),
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{args.out}: {len(runs)} runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
