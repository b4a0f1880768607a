"""Data loading: first load of the CSV and of the archive zip, and the cached load.

Each first load runs in a fresh process with an empty cache folder (nothing warm but the OS file
cache); imports are not timed. The cached load is a second process that finds the parsed .npz. Baseline, in the same run:
the seeds' way of reading the CSV (pandas `read_csv`, then one `np.array(str.split())` per row).

    python -m bench.data [--data-dir ../shared/data] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import cpu_name

ROOT = Path(__file__).resolve().parent.parent

LOAD = """
import sys, time
from fer_core.data.fer2013 import load_dataset
t = time.perf_counter()
data = load_dataset(sys.argv[1])
print(time.perf_counter() - t, len(data.labels))
"""

SEED_STYLE = """
import sys, time
import numpy as np, pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1])
images = np.stack([np.array(p.split(), dtype=np.uint8).reshape(48, 48) for p in df["pixels"]])
labels = df["emotion"].to_numpy()
print(time.perf_counter() - t, len(labels))
"""


def _timed(code: str, path: Path, cache: Path) -> tuple[float, int]:
    env = {**os.environ, "FER_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    files = {"csv": data_dir / "fer2013.csv.gz", "zip": data_dir / "fer2013_kaggle_archive.zip"}
    runs: dict[str, list[float]] = {}
    faces = {}
    for _ in range(args.repeat):
        for name, path in files.items():
            with tempfile.TemporaryDirectory() as cache:
                first, faces[name] = _timed(LOAD, path, Path(cache))
                cached, _ = _timed(LOAD, path, Path(cache))
            runs.setdefault(f"{name}_first_s", []).append(first)
            runs.setdefault(f"{name}_cached_s", []).append(cached)
        seed, _ = _timed(SEED_STYLE, files["csv"], Path(tempfile.gettempdir()))
        runs.setdefault("baseline_csv_s", []).append(seed)
    out = {key: round(statistics.median(v), 2) for key, v in runs.items()}
    out["cached_s"] = max(out["csv_cached_s"], out["zip_cached_s"])
    out["ratio_csv_first_vs_baseline"] = round(out["baseline_csv_s"] / out["csv_first_s"], 1)
    out["faces"] = faces
    out["runs"] = {k: [round(x, 3) for x in v] for k, v in runs.items()}
    out["target_cached_s"] = 2.0
    out["machine"] = {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if not args.json:
        for key in ("csv_first_s", "csv_cached_s", "zip_first_s", "zip_cached_s", "baseline_csv_s"):
            print(f"{key:<16} {out[key]:>7.2f} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
