"""Cost of the genotype checks of issue 10 (item 5) relative to building G.

With missing calls present (1 % at random), on n individuals x p SNPs:

* ``call_report`` (missing calls per SNP and per individual; the CLI runs it once),
* the no-call check inside ``genomic_relationship`` (one pass of the missing mask),
* ``pair_call_counts`` (the true ``.grm.N.bin``; ``henderson grm`` to GCTA only),

each as a ratio of the time of ``genomic_relationship`` itself (VanRaden 1), measured
in the same run. Run: ``flock /tmp/henderson-bench.lock .venv/bin/python
benchmarks/bench_input_checks.py [n p]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from henderson import Genotypes, genomic_relationship
from henderson.data.genotypes import MISSING
from henderson.io.qc import _row_missing, call_report
from henderson.relationships.grm_io import pair_call_counts


def best(f, k=3):
    out = []
    for _ in range(k):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return min(out)


def main(n=2000, p=20000):
    rng = np.random.default_rng(0)
    d = rng.binomial(2, rng.uniform(0.05, 0.5, p), size=(n, p)).astype(np.int8)
    d[rng.random((n, p)) < 0.01] = MISSING
    geno = Genotypes([f"i{k}" for k in range(n)], None, d)
    t_g = best(lambda: genomic_relationship(geno))
    t_nocall = best(lambda: _row_missing(geno))
    t_report = best(lambda: call_report(geno))
    t_pairs = best(lambda: pair_call_counts(geno))
    print(f"n = {n}, p = {p}, 1 % missing calls; best of 3")
    print(f"| genomic_relationship (VanRaden 1, includes the no-call check) | {t_g:.2f} s | 1.00 |")
    print(f"| no-call check (one pass of the missing mask) | {t_nocall:.2f} s | {t_nocall / t_g:.2f} |")
    print(f"| call_report (per SNP and per individual) | {t_report:.2f} s | {t_report / t_g:.2f} |")
    print(f"| pair_call_counts (.grm.N.bin) | {t_pairs:.2f} s | {t_pairs / t_g:.2f} |")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
