"""Where one training command spends its time, phase by phase, from launch to exit.

Runs the training command of `bench/train_end_to_end.py` (`python -m fer_core train ...`) in a
child process whose library stages are wrapped in timers: importing torch and fer_core, reading
the dataset, building the network, building the trainer (on CUDA this starts the device), the first
call of every function the trainer compiles (its compiling), the first optimisation step, the CUDA
graph's capture, the first epochs and validations, the later ones (median), what follows the last
epoch (the run's files, the half-precision re-save) and the process's exit. Stages nest as they
run: the first step holds the compiling and the capture, the first epoch holds the first step, and
each is listed when it ends. Writing an epoch's files (`epoch_files`) follows the epoch, outside
the seconds its history records. On CUDA each timed stage synchronises the device first and last,
so its GPU work is counted in it (outside a capture).

    python -m bench.train_phases --data ../shared/data/fer2013_kaggle_archive.zip --epochs 3
        --cold --repeat 2 --env TORCHINDUCTOR_WORKER_START=fork
        --out bench/results/train_phases_h200.json -- --cuda-graph --compile --cudnn-benchmark

`--env NAME=VALUE` adds a variant that runs with that environment setting (a compiler option,
say); with `--repeat N` the variants alternate N times, so a drift of the machine shows in all of
them. `--cold` gives every run empty compile caches and an empty dataset cache of its own
(temporary folders, the user's own caches untouched): every run parses and compiles as on a fresh
machine. The page cache stays as it is (`bench/cold_start.py` drops it). The timers wrap private
stages of the library by name (`STAGES`), so they follow the code: a stage that is renamed fails
the run with its name. A CPU smoke check (seconds, numbers meaningless):
`--recipe cpu_default --epochs 2 -- --device cpu --limit 256`.
"""

from __future__ import annotations

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
from bench.train_end_to_end import ROOT, command_line

PHASES_FILE = "FER_BENCH_PHASES_FILE"  # where the child writes its timeline
# (module, attribute, phase, how many calls to time one by one, whether to time the later calls
# too, into a median: not for the training step, which would synchronise the GPU every step)
STAGES = (
    ("fer_core.data.fer2013", "load_dataset", "load_dataset", 1, True),
    ("fer_core.training.runs", "_starting_model", "build_model", 1, True),
    ("fer_core.training.trainer", "Trainer.__init__", "trainer_init", 1, True),
    ("fer_core.training.trainer", "Trainer._train_step", "first_step", 1, False),
    ("fer_core.training.graphed", "GraphedStep._capture", "graph_capture", 1, True),
    ("fer_core.training.trainer", "Trainer._train_one_epoch", "train_epoch", 2, True),
    ("fer_core.training.trainer", "Trainer._validate", "validate", 2, True),
    ("fer_core.training.runs", "RunRecorder.on_epoch_end", "epoch_files", 1, True),
    ("fer_core.training.runs", "RunRecorder.on_train_end", "run_files", 1, True),
    ("fer_core.cli.train", "resave", "half_resave", 1, True),
)


def stage_owner(module: str, attribute: str) -> tuple[object, str]:
    """(the object holding a stage, its attribute name): `Trainer.__init__` -> (Trainer,
    "__init__"). A stage renamed in the library fails here, by its name."""
    import importlib

    owner: object = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    getattr(owner, name)
    return owner, name


# ----------------------------------------------------------------------------- the child


class Timeline:
    """Timed events of the child process: (phase, seconds it took or None, seconds since start)."""

    def __init__(self) -> None:
        self.start = time.time()
        self.events: list[tuple[str, float | None, float]] = []
        self.later: dict[str, list[float]] = {}  # phase -> seconds of the calls past the first few

    def mark(self, phase: str, seconds: float | None = None) -> None:
        self.events.append((phase, seconds, time.time() - self.start))

    def wrap(self, owner: object, name: str, phase: str, first: int, later: bool) -> None:
        """Time `owner.name`'s calls: the first `first` one by one, the rest into `later` (or,
        with later=False, not at all: no synchronising in every training step)."""
        original = getattr(owner, name)
        calls = [0]

        def timed(*args, **kwargs):
            if calls[0] >= first and not later:
                return original(*args, **kwargs)
            began = _synced()
            out = original(*args, **kwargs)
            seconds = _synced() - began
            if calls[0] < first:
                self.mark(f"{phase}{calls[0] if first > 1 else ''}", seconds)
            else:
                self.later.setdefault(phase, []).append(seconds)
            calls[0] += 1
            return out

        setattr(owner, name, timed)


def _synced() -> float:
    """The time now, after the GPU's queued work (when CUDA is started and nothing captures)."""
    import torch

    if torch.cuda.is_initialized() and not torch.cuda.is_current_stream_capturing():
        torch.cuda.synchronize()
    return time.perf_counter()


def _first_calls_of_compiled(timeline: Timeline) -> None:
    """Make `torch.compile` return a callable that times its own first call (the compiling)."""
    import torch

    compile_ = torch.compile

    class FirstCallTimed:
        def __init__(self, compiled, name: str) -> None:
            self._compiled, self._name, self._called = compiled, name, False

        def __call__(self, *args, **kwargs):
            if self._called or torch.cuda.is_current_stream_capturing():
                return self._compiled(*args, **kwargs)
            began = _synced()
            out = self._compiled(*args, **kwargs)
            timeline.mark(f"compile {self._name}", _synced() - began)
            self._called = True
            return out

        def __getattr__(self, name: str):  # the compiled module's attributes, as before
            return getattr(self._compiled, name)

    def timed_compile(model=None, **kwargs):
        if model is None:  # used as a decorator factory: nothing to time yet
            return compile_(**kwargs)
        name = getattr(model, "__name__", type(model).__name__)
        return FirstCallTimed(compile_(model, **kwargs), name)

    torch.compile = timed_compile


def child(argv: list[str]) -> int:
    """Run `fer_core` with `argv` under the timers; the timeline goes to $FER_BENCH_PHASES_FILE."""
    timeline = Timeline()
    import torch  # noqa: F401 (timed: the first import)

    timeline.mark("import_torch")
    _first_calls_of_compiled(timeline)
    from fer_core.cli import main as cli

    timeline.mark("import_fer_core")
    for module, attribute, phase, first, later in STAGES:
        timeline.wrap(*stage_owner(module, attribute), phase, first, later)
    rc = cli.main(argv)
    timeline.mark("done")
    record = {"start": timeline.start, "events": timeline.events, "later": timeline.later}
    Path(os.environ[PHASES_FILE]).write_text(json.dumps(record))
    return rc


# ----------------------------------------------------------------------------- the parent


def run_once(train_args: list[str], env: dict[str, str], cold: bool) -> dict:
    """One timed run of the training command in a child process with `env` added."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        child_env = {**os.environ, **env, PHASES_FILE: str(folder / "phases.json")}
        if cold:  # caches of this run's own
            child_env |= {
                "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
                "TRITON_CACHE_DIR": str(folder / "triton"),
                "FER_CACHE_DIR": str(folder / "dataset"),
            }
        command = [sys.executable, "-m", "bench.train_phases", "--child", "--", *train_args,
                   "--run-dir", str(folder / "run")]  # fmt: skip
        launched = time.time()
        done = subprocess.run(command, cwd=ROOT, env=child_env, capture_output=True, text=True)
        ended = time.time()
        phases_file = folder / "phases.json"
        if done.returncode != 0 or not phases_file.exists():
            return {"env": env, "error": (done.stderr or done.stdout)[-2000:]}
        timeline = json.loads(phases_file.read_text())
    return summarise(timeline, launched, ended) | {"env": env}


def summarise(timeline: dict, launched: float, ended: float) -> dict:
    """A run's phases in seconds: the stages in the order they ran, the medians of the later
    epochs and validations, the interpreter's start (launch to the child's first line) and exit
    (its last line to the end of the process)."""
    phases: dict[str, float] = {"interpreter_start": round(timeline["start"] - launched, 2)}
    previous = 0.0
    for phase, seconds, at in timeline["events"]:
        phases[phase] = round(seconds if seconds is not None else at - previous, 3)
        previous = at
    phases.pop("done", None)
    for phase, values in timeline["later"].items():
        phases[f"{phase} (median of {len(values)})"] = round(statistics.median(values), 3)
    done_at = timeline["start"] + timeline["events"][-1][2]
    phases["exit"] = round(ended - done_at, 2)
    return {"wall_s": round(ended - launched, 1), "phases": phases}


def main() -> int:
    if "--child" in sys.argv[1:2]:
        argv = sys.argv[sys.argv.index("--") + 1 :]
        return child(["train", *argv])
    parser, own, extra = command_line(__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant")
    parser.add_argument("--cold", action="store_true",
                        help="empty compile and dataset caches for every run")  # fmt: skip
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a variant with this environment setting (repeatable)")  # fmt: skip
    args = parser.parse_args(own)
    variants: list[dict[str, str]] = [{}]
    for setting in args.env:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            parser.error(f"--env takes NAME=VALUE, not {setting!r}")
        variants.append({name: value})
    train_args = ["--data", args.data, "--recipe", args.recipe, "--epochs", str(args.epochs),
                  "--quiet", "--half", *extra]  # fmt: skip
    runs = []
    for round_ in range(args.repeat):
        for env in variants:
            result = run_once(train_args, env, args.cold) | {"round": round_ + 1}
            print(json.dumps(result), flush=True)
            runs.append(result)
    import torch  # only now: each run starts torch on its own

    out = {
        "command": "python -m fer_core train "
        + shlex.join(["--data", Path(args.data).name, *train_args[2:], "--run-dir", "RUN"]),
        "cold": args.cold,
        "runs": runs,
        "machine": gpu_machine(torch.cuda.is_available()),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
