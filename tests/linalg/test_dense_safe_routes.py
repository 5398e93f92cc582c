"""Each call site routed through henderson.linalg.dense_safe gives the same result with
the guard forced (every call blocked, blocks of 5 rows) as with the plain LAPACK/BLAS
call it replaced (the default at these sizes): equal to 1e-12 relative."""

import numpy as np
import pandas as pd
import pytest

from henderson.linalg import dense_safe as D


def both(fn, monkeypatch):
    """(plain result, guarded result) of fn()."""
    plain = fn()
    with monkeypatch.context() as m:
        m.setattr(D, "SAFE_ORDER", 0)
        m.setattr(D, "BLOCK", 5)
        guarded = fn()
    return plain, guarded


def close(a, b, tol=1e-12):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(np.abs(b).max(), 1e-300))


def _spd(n, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, n + 5))
    return x @ x.T / n + 0.3 * np.eye(n)


def _geno(k=24, m=150, seed=1, missing=0.0):
    r = np.random.default_rng(seed)
    p = r.uniform(0.1, 0.9, m)
    X = ((r.random((k, m)) < p).astype(float) + (r.random((k, m)) < p)).astype(float)
    if missing:
        X[r.random(X.shape) < missing] = np.nan
    return pd.DataFrame(X, index=[f"g{i}" for i in range(k)], columns=[f"s{j}" for j in range(m)])


def test_single_step_chol_and_inverse(monkeypatch):
    from henderson.relationships.single_step import _chol, _inverse_from_chol

    a = _spd(23)

    def run():
        c = _chol(a.copy(), "G", "hint")
        return np.tril(c), _inverse_from_chol(c.copy())

    (c0, i0), (c1, i1) = both(run, monkeypatch)
    close(c1, c0)
    close(i1, i0)
    close(i0, np.linalg.inv(a), 1e-10)  # and it is the inverse


def test_genomic_syrk_float64(monkeypatch):
    from henderson.relationships.genomic import _syrk

    r = np.random.default_rng(2)
    blk = np.asfortranarray(r.standard_normal((9, 22)))  # (b SNPs, n individuals), as block_t
    acc0 = np.asfortranarray(r.standard_normal((22, 22)))

    def run():
        acc = acc0.copy(order="F")
        _syrk(acc, blk)
        return np.tril(acc)

    p, g = both(run, monkeypatch)
    close(g, p)
    close(p, np.tril(acc0 + blk.T @ blk))


def test_genomic_relationship_with_missing_calls(monkeypatch):
    from henderson.relationships.genomic import genomic_relationship

    geno = _geno(missing=0.03)  # missing calls: the float64 dsyrk path
    p, g = both(lambda: genomic_relationship(geno, method="vanraden2").dense(), monkeypatch)
    close(g, p)


@pytest.mark.parametrize("how", ["dpotri", "dsyrk"])
def test_spd_inverse_from_cholesky(how, monkeypatch):
    from henderson.solvers._spd import inverse_from_cholesky

    a = _spd(19, seed=3)
    L = np.linalg.cholesky(a)
    p, g = both(lambda: inverse_from_cholesky(L, how), monkeypatch)
    close(g, p)
    close(p, np.linalg.inv(a), 1e-10)


def test_kernel_sparse_inverse(monkeypatch):
    from henderson.solvers.kernel_inverse import sparse_inverse

    q = 120
    a = np.eye(q) * 2.0 + np.diag(np.full(q - 1, -0.5), 1) + np.diag(np.full(q - 1, -0.5), -1)  # K⁻¹ tridiagonal
    L = np.linalg.cholesky(np.linalg.inv(a))

    def run():
        out = sparse_inverse(L.copy(order="F"))
        assert out is not None
        return out[0].toarray(), out[1]

    (k0, l0), (k1, l1) = both(run, monkeypatch)
    close(k1, k0)
    assert l1 == pytest.approx(l0, rel=1e-12)


def test_snp_pev_marker_space(monkeypatch):
    from henderson.models.snpblup import snp_pev

    r = np.random.default_rng(4)
    W = r.standard_normal((40, 17))
    X = np.column_stack([np.ones(40), r.standard_normal(40)])
    p, g = both(lambda: snp_pev(W, X, 0.3, 1.2, "marker"), monkeypatch)
    close(g, p)


def test_fast_cv_state(monkeypatch):
    from henderson.cv.fast import FixedVarianceCV

    r = np.random.default_rng(5)
    Kr = _spd(26, seed=6)
    X = np.column_stack([np.ones(26), r.standard_normal(26)])
    y = r.standard_normal(26)
    p, g = both(lambda: FixedVarianceCV.build(y, X, Kr, 0.7, 1.1).P, monkeypatch)
    close(g, p)


def test_apy_three_routes(monkeypatch):
    from henderson.relationships.apy import apy_inverse, apy_inverse_from_dense, apy_inverse_from_genotypes
    from henderson.relationships.genomic import genomic_relationship

    geno = _geno(k=30, m=200, seed=7)
    G = genomic_relationship(geno)
    core = geno.index.to_numpy()[[0, 3, 5, 8, 11, 13, 17, 21, 25]]
    p, g = both(lambda: apy_inverse(G, core).dense(), monkeypatch)
    close(g, p)
    p, g = both(lambda: apy_inverse_from_dense(G, core).dense(), monkeypatch)
    close(g, p)
    miss = _geno(k=30, m=200, seed=7, missing=0.02)  # missing calls: the float64 _cross path
    p, g = both(lambda: apy_inverse_from_genotypes(miss, core).dense(), monkeypatch)
    close(g, p)


def test_spec_kernel_factor_and_psd_check(monkeypatch):
    from henderson.errors import NotPositiveDefiniteError
    from henderson.spec.model import _factor_of, check_psd

    K = _spd(21, seed=8)
    ids = np.array([f"i{j}" for j in range(21)], dtype=object)
    p, g = both(lambda: _factor_of(K, "K", ids), monkeypatch)
    close(g, p)
    close(p @ p.T, K, 1e-12)
    bad = K - 2.0 * np.linalg.eigvalsh(K)[-1] * np.outer(np.ones(21), np.ones(21)) / 21  # one eigenvalue < 0

    def run():
        check_psd(K, "K", ids)  # PD: passes
        with pytest.raises(NotPositiveDefiniteError) as e:
            check_psd(bad, "K", ids)
        return str(e.value)

    p, g = both(run, monkeypatch)
    assert p == g  # same message: same smallest eigenvalue found after the failed Cholesky


def test_snp_pev_individual_space(monkeypatch):
    from henderson.models.snpblup import snp_pev

    r = np.random.default_rng(9)
    W = r.standard_normal((25, 40))
    X = np.column_stack([np.ones(25), r.standard_normal(25)])
    p, g = both(lambda: snp_pev(W, X, 0.3, 1.2, "individual", block=7), monkeypatch)
    close(g, p)


def test_gwas_fixed_ratio_whitening(monkeypatch):
    from henderson.gwas._fixed import FixedRatio

    r = np.random.default_rng(10)
    Kr = _spd(27, seed=11)
    y = r.standard_normal(27)
    X = np.column_stack([np.ones(27), r.standard_normal(27)])

    def run():
        f = FixedRatio(Kr, 0.8, y, X)
        return f.L, f.r

    (l0, r0), (l1, r1) = both(run, monkeypatch)
    close(l1, l0)
    close(r1, r0)
