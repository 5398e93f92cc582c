"""How much memory is available now: the one reader every memory check uses."""

from __future__ import annotations

import os


def available_bytes() -> int:
    """Bytes available now: ``HENDERSON_MEMORY_LIMIT`` (bytes) if set, else MemAvailable
    from /proc/meminfo (Linux), else the physical memory."""
    env = os.environ.get("HENDERSON_MEMORY_LIMIT")
    if env:
        return int(float(env))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1
