"""Write BENCHMARKS.md from the JSON results in bench/results/ (no number is typed in by hand).

python -m bench.report            # rewrites BENCHMARKS.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gpu_section(r: dict) -> str:
    """Throughput and utilisation of the measured H200 run, then the earlier H100 runs."""
    m = r["machine"]

    def used(v: dict) -> str:
        return f"{v['utilisation']:.1%}" if "utilisation" in v else ""

    rows = [["ours (data on GPU, batched augmentation, bf16, channels_last), batch 128",
             f"{r['ours']['img_per_s']:,.0f}", used(r["ours"]), "", ""]]  # fmt: skip
    for key, v in r.items():
        if key.startswith("ours_compile_") and isinstance(v, dict) and "img_per_s" in v:
            rows.append([f"ours + `torch.compile` ({v['compile']})", f"{v['img_per_s']:,.0f}",
                         used(v), "", ""])  # fmt: skip
    rows += [
        [f"seed-style: {r['baseline_source']}, PIL transforms, DataLoader 0 workers, fp32, "
         "batch 64", f"{r['baseline']['img_per_s']:,.0f}", used(r["baseline"]),
         f"**{r['ratio']}×**", f"≥ 10× ({_verdict(r['ratio'] >= 10)})"],
        [f"seed-style, tuned: {r['baseline_tuned']['workers']} workers, pinned memory",
         f"{r['baseline_tuned']['img_per_s']:,.0f}", used(r["baseline_tuned"]),
         f"{r['ratio_vs_tuned_baseline']}×", ""],
    ]  # fmt: skip
    options = ", ".join(f"{k}={v}" for k, v in r.get("arch_kwargs", {}).items())
    text = (
        f"## 1. GPU training throughput\n\n`python -m bench.train_gpu` on {m['gpu']} "
        f"({m['cpu_count']} CPU cores, torch {m['torch']}, Python {m['python']}). The shipped "
        f"recipe's network (`{r['arch']}` {options}, {r['params'] / 1e6:.1f}M parameters, "
        f"{r['forward_macs_per_image'] / 1e9:.2f} G multiply-adds forward per 48x48 face, so "
        f"{r['train_flops_per_image'] / 1e9:.2f} GFLOP per training image), its augmentations "
        "and optimiser, all measured in one run. Utilisation: achieved FLOP/s over the chip's "
        f"bf16 matrix rate measured in the same run ({r['peak']['n']}² matmul: "
        f"{r['peak']['tflops']:.0f} TFLOP/s).\n\n"
    )
    text += _table(["pipeline", "images/s", "utilisation", "ours is faster by", "target"], rows)
    best = r.get("ours_img_per_s", r["ours"]["img_per_s"])
    text += (
        f"\n\nTarget ≥ 46,000 img/s (4× the eager step): {best:,.0f} img/s "
        f"({_verdict(best >= 46000)}); the best compiled step is "
        f"{best / r['ours']['img_per_s']:.2f}× the eager one."
    )
    tta = r.get("time_to_accuracy")
    if tta:
        text += "\n\n" + _tta_text(tta)
    for name in ("train_gpu_h100.json", "train_gpu_h100_b.json"):
        earlier = _load(name)
        if earlier:
            text += (
                f"\n\nAn earlier run on an {earlier['machine']['gpu']} (`{name}`, the same "
                f"network): ours {earlier['ours']['img_per_s']:,.0f} img/s, seed-style "
                f"{earlier['baseline']['img_per_s']:,.0f} img/s (**{earlier['ratio']}×**), tuned "
                f"{earlier['baseline_tuned']['img_per_s']:,.0f} img/s "
                f"({earlier['ratio_vs_tuned_baseline']}×)"
                + (
                    f"; `torch.compile` (default mode) {earlier['ours_compile']['img_per_s']:,.0f}"
                    " img/s"
                    if "ours_compile" in earlier
                    else ""
                )
                + "."
                + (
                    " " + _tta_text(earlier["time_to_accuracy"])
                    if "time_to_accuracy" in earlier
                    else ""
                )
            )
    return text + _gpu_followups() + _graph_section()


def _gpu_followups() -> str:
    """The single network the throughput target names, the recipe under torch.compile, and the
    profile of a step (each from its own run)."""
    text = ""
    single = _load("train_gpu_h200_single.json")
    if single:
        best = single["ours_img_per_s"]
        compiled = single.get(
            f"ours_compile_{(single['ours_best_compile'] or '').replace('-', '_')}"
        )
        text += (
            f"\n\n**The single 5.2M `fer_vgg`** (`--branches 1`, the network the 46,000 img/s "
            f"target names; {single['machine']['gpu']}, one run, "
            f"{single['train_flops_per_image'] / 1e9:.2f} GFLOP per training image): ours "
            f"{single['ours']['img_per_s']:,.0f} img/s eager ({single['ours']['utilisation']:.1%})"
            + (
                f", {compiled['img_per_s']:,.0f} img/s with `torch.compile` "
                f"({compiled['compile']}, {compiled['utilisation']:.1%})"
                if compiled
                else ""
            )
            + f"; seed-style {single['baseline_img_per_s']:,.0f} img/s (**{single['ratio']}×**), "
            f"tuned {single['baseline_tuned']['img_per_s']:,.0f} img/s "
            f"({single['ratio_vs_tuned_baseline']}×). Target ≥ 46,000 img/s: {best:,.0f} "
            f"({_verdict(best >= 46000)})."
        )
    recipe = _load("train_gpu_h200_recipe_compiled.json")
    if recipe and "time_to_accuracy" in recipe:
        tta = recipe["time_to_accuracy"]
        text += (
            f"\n\n**The shipped recipe under `torch.compile` (reduce-overhead)** "
            f"(`train_gpu_h200_recipe_compiled.json`, {recipe['machine']['gpu']}): "
            + _tta_text(tta)
            + f" Target: the whole run ≤ 3 min: {tta['run_minutes']} min "
            f"({_verdict(tta['run_minutes'] <= 3)})."
        )
    rows = []
    prof = _load("train_profile_b4.json") or {}
    for key, label in (("eager", "eager"), ("compile_default", "compiled")):
        v = prof.get(key)
        if not v:
            continue
        launches = v["launches_per_step"]
        rows.append([f"`fer_vgg` branches=4, {label}", f"{v['wall_ms']:.2f} ms",
                     f"{v['gpu_busy_ms']:.2f} ms", f"{v['gpu_busy_share']:.0%}",
                     f"{launches['augment']:.0f}", f"{launches['step']:.0f}",
                     f"{v['graph_launches_per_step']:.0f}"])  # fmt: skip
    if rows:
        gpu = prof["machine"]["gpu"]
        text += (
            "\n\n**Where a step's time goes** (`python -m bench.train_profile "
            f"--compile-mode default --steps 30`, the shipped network; {gpu}, batch 128, the PyTorch "
            "profiler): wall time per step, the summed time of its kernels on the GPU, and "
            "the kernels the host launches for the batch's augmentation and for the step "
            "(forward, loss, backward, optimiser, weight average).\n\n"
            + _table(
                [
                    "network",
                    "wall per step",
                    "GPU busy",
                    "busy share",
                    "launches: augmentation",
                    "launches: step",
                    "CUDA graphs",
                ],
                rows,
            )
            + "\n\nLaunched one by one, the GPU computes for a third to a half of each step "
            "and waits for the host the rest. Eagerly the augmentation alone launches over a "
            "hundred small kernels a batch; the trainer compiles it with the network (its random "
            "numbers drawn first, in one kernel), down to 8, while the optimiser and weight "
            "average still launch dozens more. Capturing the whole step in one CUDA graph "
            "(below) removes the launches." + _largest_kernel_text()
        )
    return text


def _largest_kernel_text() -> str:
    """What the shipped network's compiled step spends most GPU time on."""
    prof = _load("train_profile_b4.json")
    step = (prof or {}).get("compile_default")
    if not step or not step.get("top_kernels_ms"):
        return ""
    name, ms = step["top_kernels_ms"][0]
    short = name.split("<")[0].replace("void ", "")
    return (
        f" For the shipped network the largest kernel of a compiled step is `{short}`, "
        f"{ms:.2f} ms of its {step['gpu_busy_ms']:.2f} ms on the GPU: in channels_last, "
        "cuDNN copies each group's channels out before a grouped convolution. In a compiled "
        "CUDA graph the trainer computes the branches one by one instead, which needs no copies "
        "(below)."
    )


def _tta_text(tta: dict) -> str:
    return (
        "Time to accuracy, the shipped recipe (`--recipe shipped`, 180 epochs) alone on the GPU, "
        f"validating on PublicTest with flip TTA after every epoch: **{tta['minutes_to_70']} min "
        f"to 70%** (epoch {tta['epoch_to_70']}), "
        + (
            f"**{tta['minutes_to_73']} min to 73%** (epoch {tta['epoch_to_73']})"
            if tta["minutes_to_73"] is not None
            else "73% not reached"
        )
        + (
            f"; the benchmark stops at its last bar, so the run ended there after "
            f"{tta['run_minutes']} min ({tta['epochs']} epochs)"
            if tta["epoch_to_73"] is not None and tta["epoch_to_73"] == tta["epochs"]
            else f"; the whole run took {tta['run_minutes']} min"
        )
        + f", best PublicTest {tta['best_public_test']:.2%} at epoch {tta['best_epoch']}."
    )


def _graph_section() -> str:
    """The trainer with the whole step as one CUDA graph (`cuda_graph`), beside eager and
    torch.compile in the same runs."""
    runs = [(name, _load(name)) for name in ("train_gpu_h200_single_graph.json",
                                             "train_gpu_h200_recipe_graph.json")]  # fmt: skip
    runs = [(name, r) for name, r in runs if r]
    if not runs:
        return ""
    rows = []
    for _name, r in runs:
        network = f"`fer_vgg`, branches={r['arch_kwargs'].get('branches', 1)}"
        for key, label in (("ours", "eager"),
                           ("ours_compile_reduce_overhead", "`torch.compile` reduce-overhead"),
                           ("ours_cuda_graph", "**the step as one CUDA graph**"),
                           ("ours_cuda_graph_compiled",
                            "**one CUDA graph around the compiled forward**")):  # fmt: skip
            v = r.get(key)
            if v and "img_per_s" in v:
                rows.append([network, label, f"{v['img_per_s']:,.0f}", f"{v['utilisation']:.1%}"])
        rows.append([network, "seed-style (same run)", f"{r['baseline_img_per_s']:,.0f}", ""])
    single = dict(runs).get("train_gpu_h200_single_graph.json")
    text = (
        "\n\n**The whole step in one CUDA graph** (`--cuda-graph`, `fer_core/training/"
        "graphed.py`: batch gathering, augmentation drawn on the device, forward, loss, "
        "backward, fused SGD reading a learning-rate tensor, EMA; one launch per batch; with "
        "`--compile`, the network, the augmentation and the weight average compiled too, and a "
        "branched network's branches computed one by one, each on a CUDA stream of its own: "
        "`fer_core/training/branch_streams.py`). "
        "`python -m bench.train_gpu --branches 1 --epochs 2 --cuda-graph` and, for the shipped "
        "network, `--cuda-graph --epochs 3`; "
        f"{runs[0][1]['machine']['gpu']}, batch 128:\n\n"
        + _table(["network", "trainer", "images/s", "utilisation"], rows)
    )
    if single:
        best = single["ours_img_per_s"]
        text += (
            f"\n\nTarget for the single network: ≥ 46,000 img/s: {best:,.0f} "
            f"({_verdict(best >= 46000)}), {best / single['ours']['img_per_s']:.1f}× eager in "
            "the same run."
        )
    recipe = dict(runs).get("train_gpu_h200_recipe_graph.json")
    if recipe and "time_to_accuracy" in recipe:
        tta = recipe["time_to_accuracy"]
        text += "\n\n**The shipped recipe with `--cuda-graph --compile`**: " + _tta_text(tta)
    return (
        text
        + _end_to_end_text()
        + _cold_start_text()
        + _phases_text("train_phases_h200.json", "The training command phase by phase")
    )


def _end_to_end_text() -> str:
    """The shipped recipe's command timed from launch to exit (`bench/train_end_to_end.py`), one
    row for each run of it, and a sentence on the runs with the branches as grouped layers."""
    results = _load("train_end_to_end_h200.json") or {}
    runs = results.get("runs", [])
    if not runs:
        return ""

    def reached(r: dict) -> str:
        return (
            f"{r['minutes_to_73']} min (epoch {r['epoch_to_73']})"
            if r["minutes_to_73"]
            else "not reached"
        )

    rows = [[r.get("start", "not stated"), f"{r['wall_min']} min", f"{r['first_epoch_s']} s",
             f"{r['median_epoch_s']:.2f} s", f"{r['outside_epochs_s']} s", reached(r),
             f"{r['best_public_test']:.2%} (epoch {r['best_epoch']})"] for r in runs]  # fmt: skip
    header = [
        "run started on",
        "end to end",
        "first epoch (compiling)",
        "other epochs (median)",
        "outside the epochs",
        "to 73%",
        "best PublicTest",
    ]
    cold = [r for r in runs if r.get("compile_caches") != "kept"]
    kept = [r for r in runs if r.get("compile_caches") == "kept"]
    best = [r["best_public_test"] for r in runs]
    within = all(abs(b - 0.7328) <= 0.003 for b in best)
    later = statistics.median(r["epochs_s"] - r["first_epoch_s"] for r in runs)

    def span(values: list[float], fmt: str) -> str:
        low, high = format(min(values), fmt), format(max(values), fmt)
        return low if low == high else f"{low} to {high}"

    def minutes(group: list[dict], label: str) -> str:
        wall = [r["wall_min"] for r in group]
        return f"{span(wall, '.2f')} min {label} ({_verdict(max(wall) <= 3)})" if group else ""

    def first_epoch(group: list[dict], label: str) -> str:
        return f"{span([r['first_epoch_s'] for r in group], '.1f')} s {label}" if group else ""

    first_epochs = " and ".join(e for e in (first_epoch(cold, "from a fresh machine"),
                                            first_epoch(kept, "with the caches kept")) if e)  # fmt: skip
    verdicts = "; ".join(m for m in (minutes(cold, "from a fresh machine"),
                                     minutes(kept, "with the compile caches kept")) if m)  # fmt: skip
    text = (
        "\n\n**The shipped recipe end to end** (`python -m bench.train_end_to_end -- "
        "--cuda-graph --compile --cudnn-benchmark`, that is "
        f"`{runs[0]['command']}`, timed from launch to exit; {runs[0]['epochs']} epochs, each "
        f"validated on PublicTest with flip TTA; {runs[0]['machine']['gpu']}, torch "
        f"{runs[0]['machine']['torch']}). On a fresh machine no kernel has been compiled "
        "before; a run with the compile caches kept follows another on the same machine, as a "
        "user's second run does (torch keeps its compiled kernels in its cache folder):\n\n"
        + _table(header, rows)
        + "\n\nTarget: the shipped recipe end to end ≤ 3 min at the shipped run's accuracy "
        f"(73.28%) within 0.3 points: {verdicts}; {span(best, '.2%')} "
        f"({_verdict(within)}; runs of one command on a GPU are not bit-identical: cuDNN "
        "picks its algorithms by timing them, anew in each run). After the first, the epochs "
        f"(training and validating) take {later / 60:.1f} min; the rest is the start: the "
        f"first epoch, compiling, {first_epochs}, and "
        f"{span([r['outside_epochs_s'] for r in runs], '.1f')} s outside the epochs."
    )
    grouped = results.get("grouped_runs", [])
    if grouped:
        text += (
            " Measured with the trainer computing the branches as grouped layers (one grouped "
            "convolution for all four, whose channels cuDNN copies out per branch in "
            f"channels_last; `grouped_runs` in the file), {len(grouped)} runs of the same "
            f"command without compile caches: {span([r['wall_min'] for r in grouped], '.2f')} min, "
            f"epochs {span([r['median_epoch_s'] for r in grouped], '.2f')} s (median), first "
            f"epoch {span([r['first_epoch_s'] for r in grouped], '.1f')} s, best PublicTest "
            f"{span([r['best_public_test'] for r in grouped], '.2%')}."
        )
    return text


def _cold_start_text() -> str:
    """The training command's first epochs from a dropped page cache and from a warm one, and
    the files the cold run read (`bench/cold_start.py`)."""
    r = _load("cold_start_h200.json")
    if r is None:
        return ""
    cold, warm, read = r["cold"], r["warm"], r["read"]
    largest = ", ".join(f"`{Path(f['file']).name}` {f['mb']:.0f} MB" for f in read["largest"][:6])
    return (
        "\n\n**A cold start** (`python -m bench.cold_start -- --cuda-graph --compile "
        f"--cudnn-benchmark`: the same command for {r['epochs']} epochs, first with the page cache "
        "dropped, then with it warm, each time with the compile caches and the parsed-dataset "
        f"cache removed; {r['machine']['gpu']}): the first epoch took "
        f"{cold['first_epoch_s']:.1f} s cold against {warm['first_epoch_s']:.1f} s warm, the time "
        f"outside the epochs {cold['outside_epochs_s']:.1f} s against "
        f"{warm['outside_epochs_s']:.1f} s. The cold run read {read['mb'] / 1000:.2f} GB from "
        f"{read['files']:,} files, {read['python_files']:,} of them Python files "
        f"({read['python_mb']:.0f} MB); the largest: {largest}. Dropping the page cache leaves the "
        "caches below it (a virtual disk's host), so a freshly started machine pays at least this."
    )


def _phases_text(name: str, title: str) -> str:
    """`bench/train_phases.py`'s runs as a table: a row for each phase, a column for each run."""
    r = _load(name)
    if r is None:
        return ""
    runs = [run for run in r["runs"] if "phases" in run]
    phases = list(dict.fromkeys(phase for run in runs for phase in run["phases"]))

    def label(run: dict) -> str:
        setting = ", ".join(f"`{k}={v}`" for k, v in run["env"].items()) or "as it is"
        return f"{setting}, run {run['round']}"

    rows = [[_phase_name(phase), *(f"{run['phases'][phase]:.2f}" if phase in run["phases"] else ""
                      for run in runs)] for phase in phases]  # fmt: skip
    rows.append(["launch to exit", *(f"**{run['wall_s']:.1f}**" for run in runs)])
    m = r["machine"]
    where = m["gpu"] if m["gpu"] != "none (cpu)" else f"{m['cpu']}, {m['cpu_count']} cores"
    caches = "empty compile and dataset caches for every run, " if r["cold"] else ""
    return (
        f"\n\n**{title}** (`python -m bench.train_phases`, that is `{r['command']}` with a timer "
        f"around each stage; {caches}{where}, torch {m['torch']}). Seconds; a stage is listed "
        "when it ends, and stages nest: the compiling and the graph's capture fall in the first "
        "step, the first step in the first epoch:\n\n" + _table(["phase", *map(label, runs)], rows)
    )


PHASE_NAMES = {
    "interpreter_start": "Python starting",
    "import_torch": "importing torch",
    "import_fer_core": "importing fer_core",
    "load_dataset": "reading the dataset",
    "build_model": "building the network",
    "trainer_init": "building the trainer (on CUDA: starting the device)",
    "first_step": "the first step",
    "graph_capture": "capturing the step's CUDA graph",
    "train_epoch": "training",
    "validate": "validating",
    "epoch_files": "writing an epoch's files (history, state, best checkpoint)",
    "run_files": "writing the run's last files",
    "half_resave": "re-saving the best checkpoint in half precision",
    "exit": "exiting (after the last line)",
}


def _phase_name(key: str) -> str:
    """A phase of `bench/train_phases.py` in words: "train_epoch1" -> "epoch 2: training"."""
    if key.startswith("compile "):
        return f"compiling `{key.removeprefix('compile ')}` (its first call)"
    base, _, median = key.partition(" (median of ")
    if median:
        return f"later epochs: {_phase_name(base)} (median of {median}"
    stem = base.rstrip("0123456789")
    if stem != base and stem in PHASE_NAMES:
        return f"epoch {int(base[len(stem) :]) + 1}: {PHASE_NAMES[stem]}"
    return PHASE_NAMES.get(base, base)


def cpu_train_section(r: dict) -> str:
    m = r["machine"]
    rows = [
        [f"ours: `{r['arch']}` ({r['params'] / 1e6:.2f}M), batch 128, channels_last, "
         "+ PublicTest validation", f"{r['epoch_s']} s", f"≤ {r['target_epoch_s']} s "
         f"({_verdict(r['epoch_s'] <= r['target_epoch_s'])})"],
        [f"seed-style: {r['baseline']['source']}, PIL transforms, DataLoader, fp32, batch 64 "
         "(training only, scaled from "
         f"{r['baseline'].get('batch_size', 64)}-image batches)", f"{r['baseline_epoch_s']} s",
         f"ours is {r['ratio']}× faster"],
    ]  # fmt: skip
    return (
        f"## 2. CPU training\n\n`python -m bench.train_cpu --json` ({m['cpu']}, {m['cpus']} "
        f"cores, {m['threads']} torch threads, torch {m['torch']}). One epoch over all "
        f"{r['ours']['train_images']:,} training faces with the app's default recipe "
        "(`cpu_default`).\n\n"
        + _table(["pipeline", "seconds per epoch", "target / ratio"], rows)
        + _phases_text("train_phases_cpu.json", "A CPU training command phase by phase")
    )


def data_section(r: dict) -> str:
    rows = [
        ["`fer2013.csv.gz`, first load (parse + write cache)", f"{r['csv_first_s']} s", ""],
        ["`fer2013.csv.gz`, cached", f"{r['csv_cached_s']} s",
         f"≤ {r['target_cached_s']} s ({_verdict(r['csv_cached_s'] <= r['target_cached_s'])})"],
        ["archive `.zip`, first load", f"{r['zip_first_s']} s", ""],
        ["archive `.zip`, cached", f"{r['zip_cached_s']} s",
         f"≤ {r['target_cached_s']} s ({_verdict(r['zip_cached_s'] <= r['target_cached_s'])})"],
        ["seed-style CSV read (pandas + one `str.split` per row)", f"{r['baseline_csv_s']} s",
         f"our first load is {r['ratio_csv_first_vs_baseline']}× faster"],
    ]  # fmt: skip
    return (
        f"## 3. Data loading\n\n`python -m bench.data --json` ({r['machine']['cpu']}, "
        f"{r['machine']['cpus']} cores; medians of {len(r['runs']['csv_first_s'])} runs, each in "
        "a fresh process, imports not timed).\n\n" + _table(["load", "time", "target"], rows)
    )


def inference_section(r: dict) -> str:
    rows = []
    for model in r["models"]:
        for suffix, precision in (("", "fp32"), ("_int8", "int8")):
            for tta in ("none", "flip", "crops"):
                if f"ms_per_face_b1_{tta}{suffix}" not in model:
                    continue
                rows.append(
                    [model["checkpoint"], precision, tta,
                     f"{model[f'ms_per_face_b1_{tta}{suffix}']} ms",
                     f"{model[f'ms_per_face_b32_{tta}{suffix}']} ms"]
                )  # fmt: skip
    text = (
        f"## 4. Inference on CPU\n\n`python -m bench.webcam --json` ({r['machine']['cpu']}, "
        f"{r['machine']['threads']} threads, torch {r['machine']['torch']}, OpenCV "
        f"{r['machine']['opencv']}).\n\n"
        + _table(["model", "network", "TTA", "per face, batch 1", "per face, batch 32"], rows)
        + "\n\n"
    )
    photo, live = r["photo_ms_per_face"], r
    fast = next(m for m in r["models"] if m["checkpoint"] == r["webcam_model"])
    first = r["models"][0]
    end_to_end = [
        [f"photo, default settings ({r['photo_model']}, detection + crop + "
         f"{first['photo_default_tta']} TTA, {first.get('precision', 'fp32')} network), per "
         "face", f"{photo} ms", f"≤ 100 ms ({_verdict(photo <= 100)})"],
        [f"webcam, 640x480, 1 face ({r['webcam_model']}, detection, smoothing, drawing)",
         f"{live['fps_1_face']} fps", f"≥ 20 fps ({_verdict(live['fps_1_face'] >= 20)})"],
        [f"webcam, 640x480, 3 faces (the live detector found {fast['webcam_faces_found_3']}; "
         f"the photo path's found {fast['faces_found_3']})", f"{live['fps_3_faces']} fps",
         f"≥ 20 fps ({_verdict(live['fps_3_faces'] >= 20)})"],
    ]  # fmt: skip
    text += _table(["path", "result", "target"], end_to_end)
    model = r["models"][0]
    if "photo_ms_per_face_fp32" in model:
        text += (
            f"\n\nThe same photo path with the fp32 network, in the same run: "
            f"{model['photo_ms_per_face_fp32']} ms per face."
        )
    if "photo_ms_per_face_tilt_all" in model:
        text += (
            f"\n\nOf the photo path, face detection in the 640x480 photo takes "
            f"{model['detect_ms_640x480']} ms. Measured in the same run, the detector that searched "
            f"its turned copies down to the smallest face (`tilt_min_face=1`, the default before) "
            f"took {model['detect_ms_640x480_tilt_all']} ms, and the photo path with it "
            f"{model['photo_ms_per_face_tilt_all']} ms per face."
        )
    return text


def app_section(r: dict, title: str = "## 5. The app") -> str:
    rows = [
        ["`streamlit run` → Home rendered in Chromium (median of "
         f"{len(r['runs']['app'])} cold starts)", f"{r['cold_start_s']} s",
         f"≤ {r['targets']['cold_start_s']:.0f} s "
         f"({_verdict(r['cold_start_s'] <= r['targets']['cold_start_s'])})",
         f"bare Streamlit app: {r['baseline_cold_start_s']} s"],
        ["server memory right after start-up (RSS)", f"{r['rss_after_start_mb']:.0f} MB", "",
         f"bare: {r['baseline_rss_mb']:.0f} MB"],
        ["server peak memory after every page, full dataset + shipped model + a photo "
         "(VmHWM)", f"{r['peak_rss_mb']:.0f} MB",
         f"≤ {r['targets']['peak_rss_mb']} MB "
         f"({_verdict(r['peak_rss_mb'] <= r['targets']['peak_rss_mb'])})", ""],
    ]  # fmt: skip
    pages = ", ".join(f"{k} {v} s" for k, v in r["page_seconds"].items())
    torch = r["machine"].get("torch", "?")
    limit = ""
    if "import_s" in r and r["cold_start_s"] > r["targets"]["cold_start_s"]:
        extra = r["cold_start_s"] - r["baseline_cold_start_s"]
        cause = "with the CUDA build that import" if "+cpu" not in torch else "that import"
        limit = (
            f"\n\nWhat limits the cold start here: a bare Streamlit app takes "
            f"{r['baseline_cold_start_s']} s from `streamlit run` to its page in this browser on "
            f"this machine, and the app's Home {extra:.2f} s more. Home and the sidebar no longer "
            "import torch (the shipped model's summary is read without it), but the app then "
            f"imports torch in the background for the other pages, and {cause} "
            f"({r['import_s']} s with the model code, pandas and Plotly, measured in the same run) "
            "competes with Chromium's first paint for the 2 cores."
        )
        if "+cpu" not in torch:
            limit += " The CPU build that requirements.txt installs imports faster (below)."
    return (
        f"{title}\n\n`python -m bench.app --json` ({r['machine']['cpu']}, "
        f"{r['machine']['cpus']} cores, Python {r['machine']['python']}, torch {torch}; Debian's "
        "Chromium through playwright, server and browser on the same machine).\n\n"
        + _table(["measure", "result", "target", "baseline (same run)"], rows)
        + f"\n\nPage visits on the warm server (first render, until its main chart or result): "
        f"{pages}." + _evaluate_visits(r) + limit
    )


def _evaluate_visits(r: dict) -> str:
    """The Evaluate page computing the shipped model's PublicTest evaluation, then showing it
    again from disk, when the run measured it."""
    e = r.get("evaluate_seconds")
    if not e:
        return ""
    first, kept = e["evaluate PublicTest (press Evaluate)"], e["evaluate PublicTest again (kept)"]
    return (
        f" Evaluate, the shipped model on PublicTest with flip: **{first} s** from opening the page "
        f"and pressing Evaluate to the mistakes shown (a progress bar with the time left meanwhile), "
        f"then **{kept} s** for the next visit, which reads the kept evaluation; the server's peak "
        f"memory after it: {r['peak_rss_after_evaluate_mb']:.0f} MB."
    )


def app_deploy_section(r: dict) -> str:
    return app_section(
        r,
        "### The app with the CPU build of torch\n\nWhat a deployment installs "
        "(requirements.txt's extra index gives the CPU-only wheels; this machine cannot reach "
        "that index, so section 5 above ran the CUDA build, whose import alone is ~530 MB "
        "resident against ~220 MB). Run from a Python 3.11 venv with the machine's local "
        "`torch==2.13.0+cpu` wheel and the rest of requirements.txt (the app never imports "
        "torchvision).",
    )


def video_section(r: dict) -> str:
    s, mem, t, m = r["speed"], r["memory"], r["targets"], r["machine"]
    fast, default = s["fast_checkpoint"], s["default_checkpoint"]
    rows = [
        [f"1 face, fast model (`{fast}`)", f"{s['fast_fps_1_face']}",
         f"≥ {t['fast_fps_1_face']} ({_verdict(s['fast_fps_1_face'] >= t['fast_fps_1_face'])})"],
        [f"3 faces, fast model (found {s['fast_faces_found_3']})", f"{s['fast_fps_3_faces']}", ""],
        [f"1 face, default model (`{default}`)", f"{s['default_fps_1_face']}",
         f"≥ {t['default_fps_1_face']} "
         f"({_verdict(s['default_fps_1_face'] >= t['default_fps_1_face'])})"],
        [f"3 faces, default model (found {s['default_faces_found_3']})",
         f"{s['default_fps_3_faces']}", ""],
        ["1 face, fast model, `--every 3` (video frames covered per second)",
         f"{s['fast_every_3_video_fps_1_face']}", ""],
    ]  # fmt: skip
    growth_ok = mem["growth_mb"] <= t["memory_growth_mb"]
    memory = [
        ["1 minute", f"{mem['peak_rss_mb_1_min']:.0f} MB", f"{mem['seconds_1_min']} s", ""],
        ["10 minutes", f"{mem['peak_rss_mb_10_min']:.0f} MB", f"{mem['seconds_10_min']} s",
         f"{mem['growth_mb']:+.0f} MB, ≤ {t['memory_growth_mb']} MB ({_verdict(growth_ok)})"],
    ]  # fmt: skip
    tracking = [
        [row["scenario"], row["every"], f"{row['ids']} for {row['true_faces']}",
         f"{row['id_switches']} ({row['swaps']} / {row['lost_tracks']})",
         f"{row['missed']} of {row['true_boxes']}", row["false_positives"]]
        for row in r["tracking"]
    ]  # fmt: skip
    header = ["clip", "every", "ids", "id switches (swaps / lost)", "missed", "false boxes"]
    load = f"{m['load_average_before']} before, {m['load_average_after']} after"
    if m.get("nice"):
        load += f", the benchmark at nice {m['nice']}"
    return (
        f"## 6. Video files\n\n`python -m bench.video --json` ({m['cpu']}, {m['cpus']} cores, "
        f"{m['threads']} torch threads, torch {m['torch']}, OpenCV {m['opencv']}; load average "
        f"{load}). `analyse_video` with the video defaults (the webcam's detector settings, no "
        "test-time augmentation, probabilities smoothed over 0.3 s), timed end to end: "
        "decoding, detection, classification (the faces of 8 frames per forward pass), "
        "tracking, the CSV and the annotated H.264 video.\n\n"
        f"Speed on {s['clip']}, best of three runs:\n\n"
        + _table(["clip and model", "processed frames/s", "target"], rows)
        + f"\n\nMemory: peak resident memory of a fresh process analysing a clip ({mem['clip']}):"
        "\n\n"
        + _table(["clip length", "peak RSS", "analysis time", "10 min against 1 min"], memory)
        + "\n\nTracking on generated clips with known ground truth (`tests/clips.py`; boxes "
        "matched to the true faces at IoU ≥ 0.3; a face more than half covered by another is not "
        "expected to be found). An id switch is a true face changing id: a swap when it takes "
        "another face's id, a lost track when it gets a new one.\n\n" + _table(header, tracking)
    )


def realphotos_section(r: dict) -> str:
    """Our default photo pipeline against the `fer` package on the dev photo sets."""
    rows = []
    for name, entry in r["sets"].items():
        setting = "faces detected" if entry["detect"] else "each image is the face"
        for key, who in (("ours", f"ours (`{r['checkpoint']}`, default `predict`)"),
                         ("fer_default", "`fer` package, its defaults"),
                         ("fer_favourable", "`fer` package, settings that favour it")):  # fmt: skip
            if key not in entry:
                continue
            m = entry[key]
            agreed = m.get("agreed_accuracy", m.get("sequence_accuracy"))
            rows.append([f"`{name}` ({setting})", who, f"{m['accuracy']:.1%}",
                         f"{agreed:.1%}" if agreed is not None else "", f"{m['macro_f1']:.3f}",
                         f"{m['faces_found']} / {m['n']}", f"{m['ms_per_photo']:.0f}"])  # fmt: skip
        if "margin_over_fer" in entry:
            rows.append([f"`{name}`", "**margin over the better `fer`**",
                         f"**{entry['margin_over_fer'] * 100:+.1f} points**", "", "", "", ""])  # fmt: skip
    return (
        "## Real photos: ours and the `fer` package\n\n`python -m bench.realphotos --peer-python "
        f"PEER_VENV/bin/python --json` ({r['machine']['cpu']}, {r['machine']['threads']} threads, "
        f"torch {r['machine']['torch']}), both pipelines on the same photos in one run. "
        "The second accuracy column is taiwanese_dev's photos whose observers agreed with the "
        "posed label (plus neutral), or ckplus48_dev's sequences (3 frames, by majority). "
        "Target: 5 points above `fer` on both sets.\n\n" + _table(REALPHOTO_COLUMNS, rows)
    )


REALPHOTO_COLUMNS = ["set", "pipeline", "accuracy", "agreed / per sequence", "macro-F1",
                     "faces found", "ms per photo"]  # fmt: skip


# The targets for the photo detector (`haar_photo`, what FaceDetector() runs).
DETECT_TARGETS = {
    "tilt 20°, 1280x960": 0.95,
    "tilt 30°, 1280x960": 0.90,
    "4000x3000, face ~300 px": 0.95,
    "4000x3000, face ~200 px": 0.95,
    "4000x3000, face ~150 px": 0.95,
    "1920x1080, face ~120 px": 0.95,
    "1280x960, face ~64 px": 0.90,
}
DETECT_CHOSEN = "haar_photo"


def detect_section(r: dict) -> str:
    """Recall per case, false faces and time per photo for every detector, one run."""
    ran = [c for c in r["candidates"] if "error" not in c]
    chosen = next((c for c in ran if c["name"] == DETECT_CHOSEN), None)
    header = ["case", *[f"`{c['name']}`" for c in ran], "target"]
    rows = []
    for case in r["cases"]:
        name, target = case["name"], DETECT_TARGETS.get(case["name"])
        verdict = ""
        if target is not None and chosen is not None:
            verdict = f"≥ {target:.0%} ({_verdict(chosen['cases'][name]['recall'] >= target)})"
        rows.append([f"{name} ({case['faces']} faces)",
                     *[f"{c['cases'][name]['recall']:.1%}" for c in ran], verdict])  # fmt: skip
    free = ran[0]["face_free"]["images"] if ran else 0
    fp_ok = chosen is not None and chosen["face_free"]["false_per_image"] <= 0.05
    rows.append([f"false faces per face-free image ({free} images)",
                 *[f"{c['face_free']['false_per_image']:.3f}" for c in ran],
                 f"≤ 0.05 ({_verdict(fp_ok)})"])  # fmt: skip
    faced = sum(case["images"] for case in r["cases"])
    rows.append([f"false faces per image with faces ({faced} images)",
                 *[f"{_mean_false(c, r['cases']):.3f}" for c in ran], ""])  # fmt: skip
    for label, prefix in (("4000x3000", "4000x3000"), ("1280x960", "1280x960"),
                          ("256x256", "upright, 256")):  # fmt: skip
        times = [_mean_ms(c, r["cases"], prefix) for c in ran]
        target = ""
        if label == "4000x3000" and chosen is not None:
            ms = _mean_ms(chosen, r["cases"], prefix)
            target = f"≤ 1500 ms ({_verdict(ms <= 1500)})"
        rows.append([f"ms per {label} photo", *[f"{t:.0f}" for t in times], target])
    described = "\n".join(f"- `{c['name']}`: {c['description']}" for c in r["candidates"]
                          if "error" not in c)  # fmt: skip
    missing = [f"`{c['name']}` ({c['error']})" for c in r["candidates"] if "error" in c]
    m = r["machine"]
    return (
        f"## Face detection in photos\n\n`{r['command']}` ({m['cpu']}, {m['threads']} threads, "
        f"OpenCV {m['opencv']}; load average {m.get('load_average', '?')}), every candidate on "
        f"the same images in one run, {r['seconds']:.0f} s. Faces: {r['photos']}, scaled, "
        "turned and pasted several to a canvas into generated backgrounds (gradients, clouds, "
        "textures, shapes, text); face-free images: the same backgrounds at 640x480 to "
        "4000x3000. Recall per case; a face is found when a box's centre is within 0.3 face "
        "sides of its centre at 0.6-1.7 times its size. Times are wall-clock means per image "
        "(detection only).\n\n"
        + _table(header, rows)
        + "\n\n"
        + described
        + (f"\n\nNot measured: {', '.join(missing)}." if missing else "")
    )


def detect_tilt_section(r: dict) -> str:
    """The same table for the photo detector's tilt search, from its own run."""
    table = detect_section(r).split("\n\n", 2)[2]
    m = r["machine"]
    return (
        "### Turned copies from 1.5 times the smallest face\n\n"
        f"`{r['command']}` ({m['cpu']}, {m['threads']} threads, OpenCV {m['opencv']}; load "
        f"average {m.get('load_average', '?')}), {r['seconds']:.0f} s, the same cases: the photo "
        "default searches its turned copies for faces from 1.5 times the smallest face, against "
        "the same detector searching them down to the smallest face (the default before) and "
        "upright only.\n\n" + table
    )


def _mean_false(c: dict, cases: list[dict]) -> float:
    images = sum(case["images"] for case in cases)
    return sum(c["cases"][k["name"]]["false_per_image"] * k["images"] for k in cases) / images


def _mean_ms(c: dict, cases: list[dict], prefix: str) -> float:
    picked = [k for k in cases if k["name"].startswith(prefix)]
    images = sum(k["images"] for k in picked)
    return sum(c["cases"][k["name"]]["ms_per_image"] * k["images"] for k in picked) / images


def main() -> int:
    from bench.saliency import section as saliency_section  # beside the script that measures it

    parts = [
        "# Benchmarks\n\nEvery number below is rendered by `python -m bench.report` from the "
        "JSON files in `bench/results/`, which the scripts in `bench/` write (each also prints "
        "one JSON line). GPU rows name their GPU. CPU rows come from 2-core, 24 GB development "
        "machines, measured while nothing else ran; each section names the processor (an AMD "
        "EPYC, with AVX2 only or with AVX-512 and VNNI (the inference, app and photo-set rows), "
        "or an Intel Xeon, which results that say only `x86_64` ran on; the same code takes "
        "1.2-1.9x as long on the AVX2 EPYC as on the Xeon). These shared machines' speed moves "
        "between runs, so each comparison's baseline was measured in the same run.",
    ]
    sections = [
        ("train_gpu_h200.json", gpu_section),
        ("train_cpu.json", cpu_train_section),
        ("data_cpu.json", data_section),
        ("webcam_cpu.json", inference_section),
        ("app_cpu.json", app_section),
        ("app_cpu_torchcpu.json", app_deploy_section),
        ("video.json", video_section),
        ("realphotos_cpu.json", realphotos_section),
        ("detect.json", detect_section),
        ("detect_tilt.json", detect_tilt_section),
        ("saliency.json", saliency_section),
    ]
    for name, render in sections:
        result = _load(name)
        parts.append(render(result) if result else f"## {name}\n\nNot measured yet.")
    (ROOT / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")
    print(ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
