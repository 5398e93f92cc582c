"""Remake the PLINK 1.9 reference files of this folder (needs ``plink1.9`` on PATH).

Run from the repository root: ``.venv/bin/python tests/data/plink/regenerate.py``.
The tests read the committed outputs, so they run without PLINK; this script records
exactly how those outputs were made (see also ../README.md).
"""

import subprocess
from pathlib import Path

from henderson._testing.genotypes import simulate_genotypes
from henderson.io.genotypes import write_plink

HERE = Path(__file__).resolve().parent


def main() -> None:
    ours = simulate_genotypes(40, 60, seed=5, missing_rate=0.05)
    write_plink(HERE / "ours", ours)
    subprocess.run(["plink1.9", "--bfile", HERE / "ours", "--freq", "--make-bed", "--out", HERE / "theirs"],
                   check=True, capture_output=True)
    sim = simulate_genotypes(40, 300, seed=5, maf_range=(0.05, 0.5))
    write_plink(HERE / "sim", sim, fid=[f"fam{k % 3}" for k in range(sim.n)])
    subprocess.run(["plink1.9", "--bfile", HERE / "sim", "--make-grm-bin", "--out", HERE / "sim"],
                   check=True, capture_output=True)
    for junk in list(HERE.glob("*.log")) + list(HERE.glob("*.nosex")):
        junk.unlink()


if __name__ == "__main__":
    main()
