"""Where a cold start of the training command spends its time: the files it reads from disk.

Runs the training command of `bench/train_end_to_end.py` twice, for a few epochs: first with the
page cache dropped, as on a machine's first run after it starts, then again with the page cache
warm. Before each run the compile caches and the parsed-dataset cache are removed, so both runs
parse the dataset and compile the same. For each run it reports the first epoch (compiling,
capturing, the first validation) and the time outside the epochs. From `mincore`, it lists which
files the cold run brought into the page cache: the bytes a cold start reads, the largest files,
and how many Python files.

    python -m bench.cold_start --data ../shared/data/fer2013_kaggle_archive.zip --epochs 2
        --out bench/results/cold_start_h200.json -- --cuda-graph --compile --cudnn-benchmark

Linux only, as root (it writes /proc/sys/vm/drop_caches). Dropping the page cache does not empty
the caches below it (a virtual machine's disk may be cached by its host), so the cold run is what
the files cost at least, not all that a freshly started machine pays.
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from bench import gpu_machine
from bench.train_end_to_end import command_line, end_to_end
from fer_core.data.fer2013 import default_cache_dir

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
# where torch.compile and Triton keep what they compiled (removed before each run)
COMPILE_CACHES = ("/tmp/torchinductor_*", "~/.triton", "~/.cache/torch", "/tmp/triton*")
TOP_FILES = 15


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library's symbols (`mincore`), looked up once for the tens of thousands of files."""
    return ctypes.CDLL(None, use_errno=True)


def resident_bytes(path: Path) -> int:
    """How many bytes of `path` are in the page cache now (0 for an empty or unmappable file)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    page = mmap.PAGESIZE
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)  # maps, reads nothing
    try:
        view = (ctypes.c_char * size).from_buffer(mapped)
        pages = (ctypes.c_ubyte * ((size + page - 1) // page))()
        failed = _libc().mincore(
            ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), pages
        )
        del view
        return 0 if failed else sum(p & 1 for p in pages) * page
    finally:
        mapped.close()


def page_cache(roots: list[Path]) -> dict[str, int]:
    """Resident bytes of every regular file under `roots` that has any."""
    found: dict[str, int] = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                if path.is_symlink() or not path.is_file():
                    continue
                try:
                    if n := resident_bytes(path):
                        found[str(path)] = n
                except (OSError, ValueError):
                    continue
    return found


def _roots() -> list[Path]:
    """The interpreter's packages and standard library, the system's libraries and CUDA."""
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")}
    paths |= {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/cuda"}
    return sorted(Path(p) for p in paths if Path(p).is_dir())


def _clear(drop: bool) -> None:
    """Remove the compile caches and the parsed-dataset cache (both runs parse the dataset
    and compile anew); `drop`: the page cache too."""
    for pattern in COMPILE_CACHES:
        for path in Path("/").glob(os.path.expanduser(pattern).lstrip("/")):
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(default_cache_dir(), ignore_errors=True)
    if drop:
        os.sync()
        DROP_CACHES.write_text("3\n")


def _run(args, extra: list[str], drop: bool) -> dict:
    _clear(drop)
    with tempfile.TemporaryDirectory() as tmp:
        run = end_to_end(args.data, args.recipe, [*extra, "--epochs", str(args.epochs)], Path(tmp))
    keys = ("command", "error", "wall_s", "first_epoch_s", "outside_epochs_s")
    return {key: run[key] for key in keys if key in run}


def _read(before: dict[str, int], after: dict[str, int]) -> dict:
    """What the cold run read: totals, the largest files, the Python files."""
    read = {path: n - before.get(path, 0) for path, n in after.items() if n > before.get(path, 0)}
    python = [path for path in read if path.endswith((".py", ".pyc"))]
    top = sorted(read.items(), key=lambda item: -item[1])[:TOP_FILES]
    return {
        "files": len(read),
        "mb": round(sum(read.values()) / 1e6, 1),
        "python_files": len(python),
        "python_mb": round(sum(read[p] for p in python) / 1e6, 1),
        "largest": [{"file": _short(path), "mb": round(n / 1e6, 1)} for path, n in top],
    }


def _short(path: str) -> str:
    """A file's path from its package folder (`site-packages/` dropped), for the report."""
    return path.split("-packages/", 1)[-1]


def main() -> int:
    parser, own, extra = command_line(__doc__)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run")
    args = parser.parse_args(own)
    if not sys.platform.startswith("linux") or not os.access(DROP_CACHES, os.W_OK):
        parser.error(f"needs Linux and permission to write {DROP_CACHES} (run it as root)")
    roots = _roots()
    _clear(drop=True)
    before = page_cache(roots)
    cold = _run(args, extra, drop=True)
    after = page_cache(roots)
    warm = _run(args, extra, drop=False)
    import torch  # only now: the timed commands start torch on their own

    out = {"epochs": args.epochs, "cold": cold, "warm": warm, "read": _read(before, after)}
    out["machine"] = gpu_machine(torch.cuda.is_available())
    print(json.dumps(out))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if "error" not in cold and "error" not in warm else 1


if __name__ == "__main__":
    raise SystemExit(main())
