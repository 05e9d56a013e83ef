"""Shared bits of the benchmark scripts: machine description and appending to RESULTS.md."""
from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def append_results(section: str) -> None:
    """Append a section to benchmarks/RESULTS.md (created with a title if missing)."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section: the command, the machine and the date.\n\n")
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(section.rstrip() + "\n\n")
