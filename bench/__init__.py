"""Benchmarks, each run from the repository root as a module: `python -m bench.NAME`.

Their results go to bench/results/; `python -m bench.report` renders them into BENCHMARKS.md.
"""

import importlib.util
import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The processor's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), for the results' machine
    record: the same 2 cores differ by more than half in speed between models."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_machine(cuda: bool) -> dict:
    """The GPU benchmarks' machine record: the GPU's name (when `cuda`), the processor and its
    cores, torch, Python, and whether torch's bytecode is cached (`bytecode_cached`)."""
    import torch

    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (cpu)",
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "bytecode_cached": bytecode_cached(torch.__file__),
    }


def bytecode_cached(source: str) -> bool:
    """Whether the compiled bytecode of the Python file `source` is cached (a .pyc where Python
    looks for it). An environment installed without it (`pip install --no-compile`) that may not
    write it either (PYTHONDONTWRITEBYTECODE) compiles, in every run, each of the thousands of
    files a compiled training run imports: on an H200's host, 4.5 s (under a profiler) of
    building the trainer alone."""
    return Path(importlib.util.cache_from_source(source)).exists()
