"""Start-up time: ``import henderson`` and ``henderson --help`` against the floor.

The floor is importing what henderson cannot start without (numpy, scipy.sparse,
scipy.linalg, pandas) in a fresh interpreter; issue 15 asks for henderson within 1.3×
of it. Each command runs in a new process ``--repeats`` times, interleaved so machine
load hits all alike; the median is reported.

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_startup.py \
        --write benchmarks/results/startup.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
CASES = {
    "floor: import numpy, scipy.sparse, scipy.linalg, pandas": [
        PY,
        "-c",
        "import numpy, scipy.sparse, scipy.linalg, pandas",
    ],
    "import henderson": [PY, "-c", "import henderson"],
    "henderson --help": [PY, "-m", "henderson.cli.main", "--help"],
    "import henderson; henderson.fit (first model-layer use)": [PY, "-c", "import henderson; henderson.fit"],
}


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    for cmd in CASES.values():  # warm the page cache and numba's on-disk cache
        _time(cmd)
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.repeats):
        for name, cmd in CASES.items():
            times[name].append(_time(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = next(iter(med.values()))
    lines = [
        f"# Start-up time ({time.strftime('%Y-%m-%d')}, {platform.node()}, Python "
        f"{platform.python_version()}, median of {args.repeats} interleaved runs)",
        "",
        "| command | seconds | × floor |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} | {v / floor:.2f} |" for k, v in med.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
