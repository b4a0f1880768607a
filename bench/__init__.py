"""Benchmarks, each run from the repository root as a module: `python -m bench.NAME`.

Their results go to bench/results/; `python -m bench.report` renders them into BENCHMARKS.md.
"""

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
    """The GPU benchmarks' machine record: the GPU's name (when `cuda`), cores, torch, Python."""
    import torch

    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (cpu)",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
