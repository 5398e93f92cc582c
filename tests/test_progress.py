"""Progress reports from long loops (what drives the command line's bars)."""

import warnings

import numpy as np

import henderson as h
from henderson._progress import report, reporting
from henderson._testing.genotypes import simulate_genotypes


def test_g_reports_snp_blocks_up_to_p():
    geno = simulate_genotypes(30, 250, seed=1)
    seen = []
    with reporting(lambda done, total: seen.append((done, total))):
        G = h.genomic_relationship(geno, block_size=64)
    assert seen == [(64, 250), (128, 250), (192, 250), (250, 250)]
    # and the result is the one computed without a callback
    np.testing.assert_array_equal(G.dense(), h.genomic_relationship(geno, block_size=64).dense())


def test_reml_reports_each_iteration_and_nothing_outside_the_block():
    d = h.datasets.load_potato()
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with reporting(lambda done, total: seen.append(done)):
            res = h.fit("Yield ~ Env + (1|Name)", d)
        h.fit("Yield ~ Env + (1|Name)", d)  # no callback installed any more
    report(1)  # without a callback: goes nowhere
    assert seen == list(range(1, res.iterations + 1))


def test_spectral_search_reports_each_evaluation():
    wheat = h.datasets.load_wheat()
    geno = h.Genotypes.from_frame(2 * wheat.markers)
    G = h.genomic_relationship(geno)
    seen = []
    with reporting(lambda done, total: seen.append(done)):
        m = h.GBLUP(pev=False).fit(G, wheat.phenotypes["env1"])
    assert seen == list(range(1, len(m.result_.log) + 1)) and len(seen) > 3
