"""The selected inverse written over the factor (``overwrite=True``) = the out-of-place one.

Reference: the dense inverse (numpy) on L's pattern, and the out-of-place selected
inverse; tolerance 1e-10 relative to max |A⁻¹| (diagonally dominant A, κ ≲ 10), with
``limit`` (the leading block, as ML's C_zz⁻¹ uses) included.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from henderson.linalg.cholesky import SymbolicCholesky


def random_spd(n, density, seed):
    A = sp.random(n, n, density=density, random_state=np.random.default_rng(seed), format="csr")
    A = A + A.T
    return (A + sp.diags(abs(A).sum(axis=1).A1 + 1.0)).tocsc()


@pytest.mark.parametrize("n,density,last", [(7, 0.4, 0), (300, 0.01, 0), (300, 0.004, 10), (200, 0.2, 2)])
def test_overwrite_equals_out_of_place(n, density, last):
    A = random_spd(n, density, seed=n + last)
    S = SymbolicCholesky(A, last=last)
    Dinv = np.linalg.inv(A.toarray())
    for limit in [None] + ([n - last] if last else []):
        ref = S.factor_matrix(A).selected_inverse(limit)
        F = S.factor_matrix(A)
        Z = F.selected_inverse(limit, overwrite=True)
        np.testing.assert_allclose(Z.z, ref.z, rtol=0, atol=1e-12 * np.abs(ref.z).max())
        h = n if limit is None else limit
        I, J = np.nonzero(A.toarray()[:h, :h])
        inv = Dinv if limit is None else np.linalg.inv(A.toarray()[:h, :h])
        np.testing.assert_allclose(Z.entries(I, J), inv[I, J], atol=1e-10 * np.abs(inv).max())
        with pytest.raises(ValueError, match="consumed"):
            F.solve(np.ones(n))
