"""Covariance checks (PSD, symmetry, finite values) for every solver, and non-finite data.

Every case here was a silent wrong answer or a misleading message before (audit of
issue 2): an indefinite K with unrecorded levels gave negative PEV on the spectral
solver; a non-symmetric K⁻¹ fitted silently; NaN or inf gave unrelated errors.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import identity_frame

import henderson as h
from henderson.relationships import Relationship
from henderson.spec.model import PSD_TOL, check_psd

FORMULA = "Yield ~ Env + (1|Name)"


@pytest.fixture(scope="module")
def ids(potato):
    return sorted(potato["Name"].unique())


@pytest.mark.parametrize("solver", ["auto", "spectral", "dense"])
def test_indefinite_k_on_unrecorded_level_refused_by_every_solver(potato, ids, solver):
    # the audit's case: NEW1 has no record and K[NEW1, NEW1] = −5
    K = identity_frame(ids + ["NEW1"])
    K.loc["NEW1", "NEW1"] = -5.0
    with pytest.raises(
        h.errors.NotPositiveDefiniteError, match=r"not positive semi-definite.*smallest eigenvalue -5.*'NEW1'"
    ):
        h.fit(FORMULA, potato, cov={"Name": K}, solver=solver)


@pytest.mark.parametrize("solver", ["spectral", "dense"])
def test_indefinite_k_on_recorded_levels_names_ids(potato, ids, solver):
    # all levels recorded: the solver's own decomposition finds it; the message names
    # the two ids whose 2 × 2 block [[1, 2], [2, 1]] has eigenvalue −1
    K = identity_frame(ids)
    K.loc[ids[0], ids[1]] = K.loc[ids[1], ids[0]] = 2.0
    with pytest.raises(
        h.errors.NotPositiveDefiniteError,
        match=rf"not positive semi-definite.*'{ids[0]}'.*'{ids[1]}'|"
        rf"not positive semi-definite.*'{ids[1]}'.*'{ids[0]}'",
    ):
        h.fit(FORMULA, potato, cov={"Name": K}, solver=solver)


def test_check_psd_tolerance():
    # K = Q diag(w) Q' with a chosen smallest eigenvalue; λ_max = 2
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    ids = np.array([f"i{k}" for k in range(40)], dtype=object)
    w = np.linspace(0.0, 2.0, 40)
    for smallest, ok in [
        (0.0, True),  # singular PSD (a centred G)
        (-0.1 * PSD_TOL * 2.0, True),  # rounding-level negative
        (-100 * PSD_TOL * 2.0, False),
    ]:  # real indefiniteness
        w[0] = smallest
        K = (Q * w) @ Q.T
        K = (K + K.T) / 2
        if ok:
            check_psd(K, "g", ids)
        else:
            with pytest.raises(h.errors.NotPositiveDefiniteError, match="not positive semi-definite"):
                check_psd(K, "g", ids)


def test_singular_psd_k_with_unrecorded_levels_is_accepted(potato, ids):
    # rank-10 K (like G from few markers) over the 41 clones plus 5 unrecorded ids;
    # the fit must go through and predict the new ids
    rng = np.random.default_rng(3)
    all_ids = ids + [f"NEW{k}" for k in range(5)]
    W = rng.normal(size=(len(all_ids), 10))
    W -= W.mean(axis=0)
    K = pd.DataFrame(W @ W.T / 10, index=all_ids, columns=all_ids)  # rank 9: Cholesky fails
    res = h.fit(FORMULA, potato, cov={"Name": K})
    assert res.solver == "spectral"
    assert (res.blups["Name"].loc["NEW0":, "pev"] >= 0).all()


def test_nonsymmetric_sparse_inverse_refused(potato, ids):
    P = sp.lil_matrix(np.eye(len(ids)) * 2.0)
    P[3, 7] = 0.4  # [7, 3] stays 0: the dense Cholesky would read one triangle only
    rel = Relationship(ids, sp.csr_matrix(P), inverse=True)
    with pytest.raises(
        h.errors.NotPositiveDefiniteError,
        match=rf"inverse covariance for 'Name' is not symmetric: Kinv\['{ids[3]}', '{ids[7]}'\]"
        rf"|inverse covariance for 'Name' is not symmetric: Kinv\['{ids[7]}', '{ids[3]}'\]",
    ):
        h.fit(FORMULA, potato, cov_inverse={"Name": rel})


def test_nonsymmetric_dense_inverse_refused(potato, ids):
    P = np.eye(len(ids)) * 2.0
    P[0, 5] = 0.3
    rel = Relationship(ids, P, inverse=True)
    with pytest.raises(h.errors.NotPositiveDefiniteError, match="inverse covariance for 'Name' is not symmetric"):
        h.fit(FORMULA, potato, cov_inverse={"Name": rel})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_covariance_names_ids(potato, ids, bad):
    K = identity_frame(ids + ["NEW1"])
    K.loc[ids[4], ids[4]] = bad
    with pytest.raises(h.DataError, match=rf"covariance for 'Name' has NaN or infinite values.*'{ids[4]}'"):
        h.fit(FORMULA, potato, cov={"Name": K})


def test_non_finite_sparse_inverse_names_ids(potato, ids):
    P = sp.lil_matrix(np.eye(len(ids)))
    P[9, 9] = np.nan
    rel = Relationship(ids, sp.csr_matrix(P), inverse=True)
    with pytest.raises(h.DataError, match=rf"inverse covariance for 'Name' has NaN.*'{ids[9]}'"):
        h.fit(FORMULA, potato, cov_inverse={"Name": rel})


def test_infinite_covariate_names_column_and_rows(potato):
    d = potato.copy()
    d.loc[[7, 42], "Weight"] = [np.inf, -np.inf]
    with pytest.raises(h.DataError, match=r"column 'Weight' has 2 infinite value\(s\), at data index '7', '42'"):
        h.fit("Yield ~ Env + Weight + (1|Name)", d)


def test_infinite_response_names_column_and_rows(potato):
    d = potato.copy()
    d["Yield"] = d["Yield"].astype(float)
    d.loc[11, "Yield"] = np.inf
    with pytest.raises(h.DataError, match=r"column 'Yield' has 1 infinite value\(s\), at data index '11'"):
        h.fit(FORMULA, d)


def test_nan_still_dropped_next_to_inf_check(potato):
    d = potato.copy()
    d.loc[[3], "Weight"] = np.nan
    with pytest.warns(h.errors.DataWarning, match="1 of 185 records dropped.*Weight: 1"):
        res = h.fit("Yield ~ Env + Weight + (1|Name)", d)
    assert res.n_obs == 184
