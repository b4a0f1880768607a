"""The shipped recipe end to end through the command line, as a user runs it.

Times `python -m fer_core train --recipe shipped ...` from launch to exit (interpreter start,
reading the dataset, building and compiling the network, every epoch with its PublicTest
validation and its files written, the final checkpoint), and reads the run's history for the best
PublicTest accuracy and the minutes of training epochs to 70% and 73%.

    python -m bench.train_end_to_end --data ../shared/data/fer2013_kaggle_archive.zip
        --out bench/results/train_end_to_end_h200.json --append --start "a fresh machine"
        -- --cuda-graph --compile --cudnn-benchmark

The file holds a list of runs (`runs`); `--append` adds one to it and keeps the rest of the file
(`--start` says how the machine started: fresh, or warm with its compile caches removed), and
`bench.report` shows a row for each. Each run records whether torch.compile's cache folder held
anything when it started (`compile_caches`: kept or none): a second run on one machine finds the
kernels the first compiled.
Flags after `--` go to `fer_core train` unchanged. A CPU smoke check (seconds, numbers
meaningless): `--recipe cpu_default -- --device cpu --epochs 1 --limit 256`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import gpu_machine

ROOT = Path(__file__).resolve().parents[1]
BARS = (0.70, 0.73)


def end_to_end(data: str, recipe: str, extra: list[str], workdir: Path) -> dict:
    """Run the training command once; its wall time and what its run folder records."""
    run_dir = workdir / "run"

    def command(data_arg: str, run_arg: str) -> list[str]:  # run, or shown with short names
        return ["-m", "fer_core", "train", "--data", data_arg, "--recipe", recipe,
                "--run-dir", run_arg, "--quiet", "--half", *extra]  # fmt: skip

    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command(data, str(run_dir))], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    shown = "python " + shlex.join(command(Path(data).name, "RUN"))
    if done.returncode != 0:
        return {"command": shown, "error": (done.stderr or done.stdout)[-2000:]}
    history = json.loads((run_dir / "history.json").read_text())
    best = max(history, key=lambda h: h["val_acc"])
    out = {
        "command": shown,
        "wall_s": round(wall, 1),
        "wall_min": round(wall / 60, 2),
        "epochs": len(history),
        "epochs_s": round(sum(h["seconds"] for h in history), 1),
        "first_epoch_s": round(history[0]["seconds"], 2),  # with compiling and graph capture
        "median_epoch_s": round(statistics.median(h["seconds"] for h in history), 3),
        "best_public_test": round(best["val_acc"], 4),
        "best_epoch": best["epoch"],
        "last_public_test": round(history[-1]["val_acc"], 4),
    }
    out["outside_epochs_s"] = round(out["wall_s"] - out["epochs_s"], 1)
    elapsed, reached = 0.0, {}
    for h in history:
        elapsed += h["seconds"]
        for bar in BARS:
            if h["val_acc"] >= bar and bar not in reached:
                reached[bar] = (round(elapsed / 60, 2), h["epoch"])
    for bar in BARS:
        minutes, epoch = reached.get(bar, (None, None))
        out[f"minutes_to_{round(bar * 100)}"], out[f"epoch_to_{round(bar * 100)}"] = minutes, epoch
    return out


def command_line(doc: str | None) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """(a parser with --data, --recipe and --out, the arguments before `--`, those after it,
    which go to `fer_core train` unchanged)."""
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    default = ROOT.parent / "shared" / "data" / "fer2013_kaggle_archive.zip"
    parser.add_argument("--data", default=str(default), help="archive .zip, folder or CSV")
    parser.add_argument("--recipe", default="shipped")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser, own, extra


def main() -> int:
    parser, own, extra = command_line(__doc__)
    parser.add_argument("--append", action="store_true", help="add this run to those in --out")
    parser.add_argument("--start", default="not stated",
                        help="how the machine started (fresh, say), for the report")  # fmt: skip
    args = parser.parse_args(own)
    caches = "kept" if compile_cache_used() else "none"  # looked at before the run fills it
    with tempfile.TemporaryDirectory() as tmp:
        out = end_to_end(args.data, args.recipe, extra, Path(tmp))
    import torch  # only now: the timed command starts torch on its own

    out["start"], out["compile_caches"] = args.start, caches
    out["machine"] = gpu_machine(torch.cuda.is_available())
    print(json.dumps(out))
    if args.out:
        path = Path(args.out)
        kept = json.loads(path.read_text()) if args.append and path.exists() else {}
        kept["runs"] = [*kept.get("runs", []), out]
        path.write_text(json.dumps(kept, indent=1) + "\n")
    return 0 if "error" not in out else 1


def compile_cache_used() -> bool:
    """Whether torch.compile's cache folder holds anything (TORCHINDUCTOR_CACHE_DIR, else
    torch's default in the temporary folder), found without importing torch."""
    default = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    folder = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default)
    return folder.is_dir() and any(folder.iterdir())


if __name__ == "__main__":
    raise SystemExit(main())
