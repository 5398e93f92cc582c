"""Numba kernels for the float32 SNP-block path of :class:`~henderson.gwas._fixed.FixedRatio`.

At scale every SNP test is one triangular solve L⁻¹W_b (BLAS ``strsm``, n²b/2
multiply-adds per block of b SNPs): the only O(n²m) step. Everything around it is
O(nb) per block but was done in several numpy passes over float64 copies (cast, centre,
mask, transpose to Fortran order, cast back, residualise, reduce). These two kernels
do it in one pass each:

* :func:`centre_f32` — calls (int8 with :data:`~henderson.data.genotypes.MISSING`, or
  float with NaN) to centred float32 W = x − 2p in Fortran order, missing calls 0
  (mean imputation, as :func:`~henderson.genomic_relationship` does), ready for
  ``strsm`` to overwrite in place;
* :func:`column_forms` — from the whitened block W̃ = L⁻¹W_b (float32), the residual
  r = M L⁻¹y and Q (thin QR of L⁻¹X), with float64 accumulators:
  a_j = W̃_j'r (= R_j'r because Q'r = 0), s_j = ‖W̃_j‖², q_j = Q'W̃_j, so that
  ‖R_j‖² = s_j − ‖q_j‖² (R = (I − QQ')W̃, Q orthonormal).
"""

from __future__ import annotations

import numba
import numpy as np

from ..data.genotypes import MISSING


@numba.njit(cache=True, nogil=True)
def centre_f32(block, two_p, out):
    """out[:, j] ← block[:, j] − two_p[j] (0 where the call is missing); returns out.

    block : (n, b) int8 (``MISSING`` = no call) or float (NaN = no call), any layout;
    two_p : (b,) float64; out : (n, b) float32, Fortran order.
    """
    n, b = block.shape
    miss = MISSING
    for j in range(b):
        c = two_p[j]
        for i in range(n):
            v = block[i, j]
            if v == miss or v != v:  # int8 no-call, or NaN
                out[i, j] = 0.0
            else:
                out[i, j] = v - c
    return out


@numba.njit(cache=True, nogil=True)
def column_forms(Wt, r, Q):
    """(a, s, q) of the columns of ``Wt`` (see the module notes), float64 sums.

    Wt : (n, b) float32, Fortran order; r : (n,) float64; Q : (n, c) float64, Fortran
    order. Returns a (b,), s (b,), q (c, b).
    """
    n, b = Wt.shape
    c = Q.shape[1]
    a = np.zeros(b)
    s = np.zeros(b)
    q = np.zeros((c, b))
    for j in range(b):
        aj = 0.0
        sj = 0.0
        for i in range(n):
            w = np.float64(Wt[i, j])
            aj += w * r[i]
            sj += w * w
        for k in range(c):
            qk = 0.0
            for i in range(n):
                qk += Q[i, k] * np.float64(Wt[i, j])
            q[k, j] = qk
        a[j] = aj
        s[j] = sj
    return a, s, q
