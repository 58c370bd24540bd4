"""Helpers shared by the benchmark scripts."""

from __future__ import annotations


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux VmHWM) in MB; NaN elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
