"""Dask: G and SNP-BLUP products over SNP chunks on a LocalCluster = the in-memory path.

Reference: :func:`henderson.genomic_relationship` on the genotypes in memory (itself
tested against PLINK/GCTA/rrBLUP). Tolerance 1e-10: the distributed sum differs only in
the order of floating-point additions over chunks (observed ~1e-15).
"""

import os
import signal
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def plink(tmp_path_factory):
    geno = simulate_genotypes(120, 2000, seed=4, missing_rate=0.01)
    prefix = tmp_path_factory.mktemp("plink") / "g"
    h.write_plink(prefix, geno)
    return str(prefix), h.read_genotypes(str(prefix))


@pytest.mark.filterwarnings("ignore::henderson.DataWarning")
@pytest.mark.parametrize("method", ["vanraden1", "vanraden2", "yang", "vitezica"])
def test_distributed_grm_equals_in_memory(client, plink, method):
    prefix, geno = plink
    ref = h.genomic_relationship(geno, method=method)
    from_file = h.genomic_relationship(prefix, method=method, scheduler=client, chunk_snps=300)
    from_memory = h.genomic_relationship(geno, method=method, scheduler=client, chunk_snps=700)
    for G in (from_file, from_memory):
        assert list(G.ids) == list(ref.ids)
        np.testing.assert_allclose(G.dense(), ref.dense(), rtol=0, atol=1e-10)
        assert G.info["n_snps_used"] == ref.info["n_snps_used"]
    assert from_file.info["distributed"]["chunks"] == 7  # ceil(2000 / 300)
    if method == "vanraden1":
        np.testing.assert_allclose(from_file.info["scale"], ref.info["scale"], rtol=1e-12)


@pytest.mark.filterwarnings("ignore::henderson.DataWarning")
def test_chunking_does_not_matter(client, plink):
    prefix, _ = plink
    G1 = h.genomic_relationship(prefix, scheduler=client, chunk_snps=2000).dense()
    G2 = h.genomic_relationship(prefix, scheduler=client, chunk_snps=128).dense()
    np.testing.assert_allclose(G1, G2, rtol=0, atol=1e-12)


def test_scheduler_as_address(client, plink):
    prefix, geno = plink
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", h.DataWarning)
        G = h.genomic_relationship(prefix, scheduler=client.scheduler.address, chunk_snps=1000)
        ref = h.genomic_relationship(geno)
    np.testing.assert_allclose(G.dense(), ref.dense(), rtol=0, atol=1e-10)


def test_bad_scheduler_is_an_error(plink):
    with pytest.raises(h.DataError, match="scheduler must be"):
        h.genomic_relationship(plink[1], scheduler=3)


def test_products_equal_dense(client, plink):
    from henderson.distributed import genotype_products

    prefix, geno = plink
    rng = np.random.default_rng(1)
    alpha, v = rng.standard_normal(geno.p), rng.standard_normal(geno.n)
    out = genotype_products(prefix, alpha=alpha, v=v, scheduler=client, chunk_snps=300)
    # independent dense W: counts − 2p, missing calls at 2p (centred value 0)
    d = geno.dosages.astype(float)
    W = d - 2 * geno.allele_freq[None, :]
    W[geno.dosages == -127] = 0.0
    np.testing.assert_allclose(out["W_alpha"], W @ alpha, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out["Wt_v"], W.T @ v, rtol=0, atol=1e-10)
    # supplied frequencies, by SNP id (a base population's): the same centring everywhere
    f = pd.Series(np.linspace(0.1, 0.9, geno.p), index=geno.snp_ids)
    out = genotype_products(prefix, alpha=alpha, scheduler=client, chunk_snps=300, allele_freq=f[::-1])
    W = d - 2 * f.to_numpy()[None, :]
    W[geno.dosages == -127] = 0.0
    np.testing.assert_allclose(out["W_alpha"], W @ alpha, rtol=0, atol=1e-10)


def test_snp_crossproducts_equal_in_memory(client, plink):
    """W'DW and W'Dy from the .bed and from scattered in-memory slices = the in-memory
    SNP-BLUP path's W (centred_markers) multiplied densely; uneven last chunk included."""
    from henderson.distributed import snp_crossproducts
    from henderson.models.snpblup import centred_markers

    prefix, geno = plink
    rng = np.random.default_rng(2)
    y, w = rng.standard_normal(geno.n), rng.uniform(0.5, 2.0, geno.n)
    W, _ = centred_markers(geno)
    ref, ref_w = W.T @ W, W.T @ (w[:, None] * W)
    out = snp_crossproducts(prefix, y=y, scheduler=client, chunk_snps=300)
    assert out["chunks"] == 7
    np.testing.assert_allclose(out["WtW"], ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_allclose(out["Wt_y"], W.T @ y, rtol=0, atol=1e-10 * np.abs(W.T @ y).max())
    out = snp_crossproducts(geno, y=y, weights=w, scheduler=client, chunk_snps=900)
    np.testing.assert_allclose(out["WtW"], ref_w, rtol=0, atol=1e-10 * np.abs(ref_w).max())
    np.testing.assert_allclose(out["Wt_y"], W.T @ (w * y), rtol=0, atol=1e-10 * np.abs(W.T @ y).max())


def test_snp_crossproducts_bad_input(client, plink, monkeypatch):
    from henderson.distributed import snp_crossproducts

    prefix, geno = plink
    with pytest.raises(h.DataError, match=r"weights must be finite and >= 0; bad at individuals \[3\]"):
        w = np.ones(geno.n)
        w[3] = -1
        snp_crossproducts(prefix, weights=w, scheduler=client)
    with pytest.raises(h.DataError, match=r"y has shape \(5,\)"):
        snp_crossproducts(prefix, y=np.ones(5), scheduler=client)
    monkeypatch.setenv("HENDERSON_MEMORY_LIMIT", "1000")
    with pytest.raises(MemoryError, match=r"W'W for 2000 SNPs needs .*\(genotype_products"):
        snp_crossproducts(prefix, scheduler=client)


@pytest.mark.filterwarnings("ignore::henderson.DataWarning")
def test_gblup_estimator_and_cv_on_cluster(client):
    geno = simulate_genotypes(100, 800, seed=6)
    rng = np.random.default_rng(2)
    g = geno.dosages.astype(float) @ rng.normal(0, 0.1, geno.p)  # a real genetic signal
    y = pd.Series(g - g.mean() + rng.normal(0, g.std(), geno.n), index=geno.ids)
    a = h.GBLUP(scheduler=client).fit(geno, y)
    b = h.GBLUP().fit(geno, y)
    np.testing.assert_allclose(a.G_.dense(), b.G_.dense(), rtol=0, atol=1e-10)
    assert b.variance_components_["variance"].iloc[0] > 0  # not at the boundary: GEBVs are not all 0
    np.testing.assert_allclose(a.gebv_["gebv"], b.gebv_["gebv"], rtol=0, atol=1e-8)
    ca = h.cross_validate(h.GBLUP(), geno, y, cv=4, scheduler=client)
    cb = h.cross_validate(h.GBLUP(), geno, y, cv=4)
    assert ca.settings["scheduler"] is not None and cb.settings["scheduler"] is None
    assert np.abs(cb.predictions["predicted_bv"]).max() > 0.01
    np.testing.assert_allclose(ca.predictions["predicted_bv"], cb.predictions["predicted_bv"], rtol=0, atol=1e-8)


@pytest.mark.filterwarnings("ignore::henderson.DataWarning")
def test_worker_killed_mid_computation_same_result(plink):
    """A worker process killed while chunks are in flight: Dask re-runs its tasks."""
    prefix, geno = plink
    ref = h.genomic_relationship(geno).dense()
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        pids = c.run(os.getpid)  # worker address → pid
        victim = sorted(pids)[0]
        killed = threading.Event()

        def kill_when_busy():
            t0 = time.time()
            while time.time() - t0 < 60:
                if c.processing().get(victim):  # tasks running on the victim
                    os.kill(pids[victim], signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.005)

        th = threading.Thread(target=kill_when_busy)
        th.start()
        G = h.genomic_relationship(prefix, scheduler=c, chunk_snps=40)
        th.join()
    assert killed.is_set()
    np.testing.assert_allclose(G.dense(), ref, rtol=0, atol=1e-10)


def test_cli_grm_scheduler(client, plink, tmp_path, capsys):
    from conftest import run_cli

    prefix, geno = plink
    address = client.scheduler.address
    code, out, err = run_cli(
        ["grm", "--genotypes", prefix, "--out", tmp_path / "G.csv", "--scheduler", address], capsys
    )
    assert code == 0, err
    G = pd.read_csv(tmp_path / "G.csv", index_col=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", h.DataWarning)
        ref = h.genomic_relationship(geno)
    assert list(G.index.astype(str)) == list(ref.ids)
    np.testing.assert_allclose(G.to_numpy(), ref.dense(), rtol=0, atol=1e-10)


def _mixed_genotypes():
    """60 × 500 hard calls: missing calls only in SNPs 200–259 (those chunks take the
    float64 path, the others the exact float32 one, so a share mixes both), and
    individual i5 without a call in SNPs 0–179 (two whole chunks) but called elsewhere."""
    geno = simulate_genotypes(60, 500, seed=11)
    d = geno.dosages.copy()
    rng = np.random.default_rng(3)
    hole = rng.random((60, 60)) < 0.05
    hole[5] = False  # i5's calls are counted exactly below
    d[:, 200:260][hole] = -127
    d[5, :180] = -127
    return h.Genotypes(geno.ids, geno.snps, d, {})


@pytest.mark.filterwarnings("ignore::henderson.DataWarning")
@pytest.mark.parametrize("method", ["vanraden1", "vanraden2"])
def test_one_accumulator_per_worker_uneven_chunks(client, tmp_path, method):
    """More chunks than workers (6 chunks of 90 SNPs, the last one 50) reduced into one
    accumulator per worker = the in-memory G to 1e-10 relative; an individual without
    calls in whole chunks (but called elsewhere) keeps its relationships."""
    geno = _mixed_genotypes()
    prefix = tmp_path / "mixed"
    h.write_plink(prefix, geno)
    ref = h.genomic_relationship(geno, method=method).dense()
    assert np.abs(ref[5]).max() > 0.05  # i5 is related to others through SNPs 180–499
    for src in (str(prefix), geno):
        G = h.genomic_relationship(src, method=method, scheduler=client, chunk_snps=90)
        assert G.info["distributed"]["chunks"] == 6 and G.info["distributed"]["shares"] == 2
        np.testing.assert_allclose(G.dense(), ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    if method == "vanraden1":  # both accumulators met on the workers: float32 and float64 blocks
        assert G.info["blocks"]["float32"] > 0 and G.info["blocks"]["float64"] > 0


def test_share_task_reduces_in_place():
    """The worker task itself: three chunks into one partial, whose finish equals the
    in-memory G (no cluster: the reduction, not the scheduling)."""
    from henderson.relationships.genomic_dask import _grm_share

    geno = _mixed_genotypes()
    ref = h.genomic_relationship(geno).dense()
    parts = [_grm_share(geno, 0, [(0, 90), (90, 180), (180, 250)], "vanraden1", None, "auto")]
    parts.append(
        _grm_share(
            h.Genotypes(geno.ids, geno.snps.iloc[250:], geno.dosages[:, 250:], {}),
            250,
            [(250, 340), (340, 430), (430, 500)],
            "vanraden1",
            None,
            "auto",
        )
    )
    assert parts[0]["acc32"] is None  # folded into the float64 accumulator before returning
    from henderson.relationships.genomic import _PartialG

    total = _PartialG(geno.n, "vanraden1")
    for r in parts:
        total.merge_state(r)
        total._acc64()[...] += r["acc"] if r["acc"] is not None else r["acc32"]
    G = total.finish(parts[0]["scale"] + parts[1]["scale"])
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_array_equal(parts[0]["calls"] + parts[1]["calls"] > 0, True)
    assert parts[0]["calls"][5] == 70  # i5: called only in SNPs 180–249 of the first share


def test_no_call_anywhere_and_memory_refused(client, monkeypatch):
    geno = _mixed_genotypes()
    d = geno.dosages.copy()
    d[7, :] = -127
    bad = h.Genotypes(geno.ids, geno.snps, d, {})
    with pytest.raises(h.GenotypeError, match=rf"1 individual\(s\) have no genotype call at any SNP: .*{geno.ids[7]}"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", h.DataWarning)
            h.genomic_relationship(bad, scheduler=client, chunk_snps=90)
    monkeypatch.setenv("HENDERSON_MEMORY_LIMIT", "1000")
    with pytest.raises(MemoryError, match=r"G for 60 individuals on a cluster needs 0\.1 GiB on the client"):
        h.genomic_relationship(geno, scheduler=client, chunk_snps=90)


def test_worker_memory_limit_refused():
    geno = simulate_genotypes(600, 50, seed=2)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, memory_limit="2MB", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        with pytest.raises(MemoryError, match=r"needs 0\.1 GiB per worker .* worker .* has a memory limit of 0\.0 GiB"):
            h.genomic_relationship(geno, scheduler=c)


def test_snp_crossproducts_one_accumulator_per_worker(client, tmp_path):
    """W'DW and W'Dy reduced over shares of individuals (2 shares of 30, blocks of 7: the
    last block of each share has 2) = an independent dense W'DW, with missing calls,
    record weights, frequencies by SNP id (given reversed) and observed frequencies."""
    from henderson.distributed import snp_crossproducts

    geno = _mixed_genotypes()
    prefix = tmp_path / "mixed"
    h.write_plink(prefix, geno)
    rng = np.random.default_rng(5)
    y, w = rng.standard_normal(geno.n), rng.uniform(0.5, 2.0, geno.n)
    d = geno.dosages.astype(float)
    for freq in (None, pd.Series(rng.uniform(0.1, 0.9, geno.p), index=geno.snp_ids)):
        f = geno.allele_freq if freq is None else freq.to_numpy()
        W = d - 2 * f[None, :]
        W[geno.dosages == -127] = 0.0
        ref, ref_y = W.T @ (w[:, None] * W), W.T @ (w * y)
        for src in (str(prefix), geno):
            af = None if freq is None else freq[::-1]
            out = snp_crossproducts(
                src, y=y, weights=w, allele_freq=af, scheduler=client, chunk_snps=90, chunk_individuals=7
            )
            assert out["shares"] == 2 and out["chunks"] == 6
            np.testing.assert_allclose(out["WtW"], ref, rtol=0, atol=1e-10 * np.abs(ref).max())
            np.testing.assert_allclose(out["Wt_y"], ref_y, rtol=0, atol=1e-10 * np.abs(ref_y).max())


@pytest.mark.parametrize("missing_rate", [0.0, 0.01])
def test_share_memory_is_one_accumulator_plus_one_chunk(tmp_path, missing_rate):
    """A worker's share (the task itself, traced): one n × n accumulator (4n² bytes on the
    exact float32 path, 8n² with missing calls) + one int8 chunk and its float block
    (≤ 8 bytes a value, plus the missing-call masks), whatever the number of chunks."""
    import tracemalloc

    from henderson.relationships.genomic_dask import _chunks, _grm_share

    n, p, c = 300, 3000, 500
    geno = simulate_genotypes(n, p, seed=4, missing_rate=missing_rate)
    h.write_plink(tmp_path / "g", geno)
    bed = str(tmp_path / "g.bed")
    _grm_share(bed, 0, _chunks(p, c), "vanraden1", None, "auto", (geno.ids, p))  # compile first
    for chunk in (c, c // 5):  # 6 and 30 chunks: the same bound
        tracemalloc.start()
        try:
            r = _grm_share(bed, 0, _chunks(p, chunk), "vanraden1", None, "auto", (geno.ids, p))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        acc = 4 * n * n if missing_rate == 0 else 8 * n * n
        assert (r["acc"] is None) == (missing_rate == 0)
        # + 300 kB for the per-chunk vectors and tables (a second accumulator would be 720 kB)
        assert peak <= acc + 16 * n * chunk + 300_000, (peak - acc) / (n * chunk)


@pytest.mark.filterwarnings("ignore::henderson.DataWarning")
def test_frequencies_by_snp_id_read_the_snp_table(client, plink):
    """Frequencies given by SNP id (reversed order) need the real SNP ids on the workers."""
    prefix, geno = plink
    f = pd.Series(np.linspace(0.1, 0.9, geno.p), index=geno.snp_ids)
    ref = h.genomic_relationship(geno, allele_freq=f).dense()
    G = h.genomic_relationship(prefix, allele_freq=f[::-1], scheduler=client, chunk_snps=300).dense()
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
