"""Remake the GEMMA reference files of this folder (needs Debian ``gemma`` 0.98.5 on PATH).

Run from the repository root:
``PYTHONPATH=src .venv/bin/python tests/data/gemma/regenerate.py``.
The tests read the committed outputs, so they run without GEMMA; this script records
exactly how those outputs were made (see ``README.md`` here).

Data: henderson's own seeded simulation (no external licence): 250 individuals from
three subpopulations (Balding-Nichols, F_ST = 0.05), 1,500 SNPs on 5 chromosomes; a
trait with a polygenic part drawn from N(0, 0.5 G), three SNPs of large effect, a sex
covariate (effect 0.5) and N(0, 1) noise.
"""

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from henderson._testing.genotypes import simulate_genotypes
from henderson.io.genotypes import write_plink
from henderson.relationships.genomic import genomic_relationship

HERE = Path(__file__).resolve().parent
N, P, SEED = 250, 1500, 14
QTL = {"snp100": 0.6, "snp700": -0.5, "snp1234": 0.4}


def simulate():
    geno = simulate_genotypes(N, P, seed=SEED, structure=3, fst=0.05, n_chrom=5)
    rng = np.random.default_rng(SEED)
    G = genomic_relationship(geno).matrix
    w, V = np.linalg.eigh(G)
    poly = V @ (np.sqrt(np.clip(w, 0, None) * 0.5) * rng.normal(size=N))
    sex = (rng.random(N) < 0.5).astype(float)
    d = geno.to_frame()
    y = poly + 0.5 * sex + rng.normal(size=N)
    for snp, b in QTL.items():
        y += b * d[snp].to_numpy(dtype=float)
    return geno, y, sex


def gemma(*args, out):
    cmd = ["gemma", "-bfile", "assoc", *args, "-o", out]
    subprocess.run(cmd, check=True, cwd=HERE, capture_output=True)
    return " ".join(cmd)


def main() -> None:
    geno, y, sex = simulate()
    write_plink(HERE / "assoc", geno)
    np.savetxt(HERE / "pheno.txt", y, fmt="%.10g")
    np.savetxt(HERE / "covar.txt", np.column_stack([np.ones(N), sex]), fmt="%g")
    cmds = [gemma("-p", "pheno.txt", "-gk", "1", out="assoc")]
    kin = "output/assoc.cXX.txt"
    cmds.append(gemma("-p", "pheno.txt", "-c", "covar.txt", "-k", kin, "-lmm", "1", out="exact"))
    # the null model's REML ratio vg/ve (6 significant digits in the log) (on GEMMA's kinship scale), then the Wald test at
    # that fixed ratio (-lmin = -lmax): GEMMA's P3D
    log = (HERE / "output" / "exact.log.txt").read_text()
    vg = float(re.search(r"## vg estimate in the null model = (\S+)", log).group(1))
    ve = float(re.search(r"## ve estimate in the null model = (\S+)", log).group(1))
    lam = vg / ve
    cmds.append(gemma("-p", "pheno.txt", "-c", "covar.txt", "-k", kin, "-lmm", "1",
                      "-lmin", repr(lam), "-lmax", repr(lam), out="p3d"))
    with open(HERE / "output" / "assoc.cXX.txt", "rb") as src, gzip.open(HERE / "kinship.cXX.txt.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    for name in ("exact", "p3d"):
        shutil.copy(HERE / "output" / f"{name}.assoc.txt", HERE / f"{name}.assoc.txt")
        shutil.copy(HERE / "output" / f"{name}.log.txt", HERE / f"{name}.log.txt")
    shutil.rmtree(HERE / "output")
    (HERE / "commands.txt").write_text("\n".join(cmds) + "\n")


if __name__ == "__main__":
    main()
