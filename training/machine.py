"""One line describing the machine a figure came from: benchmarks/RESULTS.md and `lookalike eval` reports."""

import os
import platform
import time


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores of {cpu}, {memory_gib:.0f} GiB, Python {platform.python_version()}"
