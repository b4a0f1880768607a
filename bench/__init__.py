"""Benchmarks, each run from the repository root as a module: `python -m bench.NAME`.

Their results go to bench/results/; `python -m bench.report` renders them into BENCHMARKS.md.
"""

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
