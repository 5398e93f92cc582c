"""The one-dimensional REML search of the one-kernel model (spectral solver).

The spectral solver, prepared once (:func:`henderson.solvers.protocol.prepare`), evaluates
through the solver protocol: ``Prepared.evaluate`` (−2 log L, the exact score and the AI
matrix), ``Prepared.profiled`` (the profiled objective over h = σ²_g/σ²_e) and
``Prepared.profiled_at_zero`` (h = 0). This module searches:
σ²_e is profiled out (σ̂²_e = y'P₁y/(n − p) at h), and the remaining one-dimensional
problem over log h is bracketed on a grid, solved by Brent's method and polished by
Newton steps on (σ²_g, σ²_e) with the exact score and AI; the boundary h = 0 is compared
explicitly. The equations are in docs/theory.md ("One dense kernel: the spectral solver").
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.optimize as so

from .._progress import report
from ..errors import ConvergenceWarning, ModelError, NotPositiveDefiniteError
from ..solvers import spectral as _spectral  # LOG_H_BOUNDS read at call time (tests patch it)
from ..solvers.identifiability import residual_at_zero_error

#: Newton polishing is converged when its last step changes σ² by less than this
#: (relative); Newton on the exact score converges quadratically, so an accepted
#: optimum is ~1e-12 away, and a larger step means the polishing was cut short.
POLISH_TOL = 1e-6


def search(prepared, method="reml", *, max_iter: int = 200, start=None):
    """Maximise the profiled likelihood of ``prepared`` over log h = log(σ²_g/σ²_e).

    ``prepared`` is the spectral solver's :class:`~henderson.solvers.protocol.Prepared`
    (``prepare(spec, "spectral")``, or ``Prepared.of`` a
    :class:`~henderson.solvers.spectral.SpectralSolver`).

    1. a grid of 25 values of log h spanning ±12 (around the ``start`` ratio if
       given) brackets the optimum;
    2. Brent's method (``scipy.optimize.minimize_scalar``, bounded, at most
       ``max_iter`` iterations) within the bracket;
    3. up to 4 Newton steps on (σ²_g, σ²_e) with the exact score and AI: Brent on
       function values locates the optimum only to ~sqrt(eps);
    4. the boundary h = 0 is compared explicitly.

    Every evaluation is a row of ``info["log"]`` (iteration, step, σ², −2 log L);
    ``info["iterations"]`` counts Brent iterations plus Newton steps.

    Returns
    -------
    sg, se : float
        σ²_g (0 on the boundary) and σ²_e.
    info : dict
        ``log`` (DataFrame), ``iterations``, ``converged``, ``boundary``,
        ``evaluations``, ``message``.

    Raises
    ------
    ModelError
        When σ²_g and σ²_e cannot be told apart (see
        :mod:`henderson.solvers.identifiability`), or when the residual variance
        heads to zero (the random effect absorbs everything), as the dense solver.

    Warns
    -----
    ConvergenceWarning
        When Brent stops at ``max_iter`` or the Newton polishing does not settle;
        the warning carries the log.
    """
    prepared.check_identifiable(method)
    term = prepared.state.term  # for messages only
    LOG_H_BOUNDS = _spectral.LOG_H_BOUNDS
    rows: list = []
    names = tuple(prepared.names)  # (sigma2_<term>, sigma2_Residual)

    def record(step, sg, se, val):
        rows.append(
            {"iteration": len(rows), "step": step, "m2ll": float(val), names[0]: float(sg), names[1]: float(se)}
        )
        report(len(rows))

    def f(lh, step="brent"):
        val, se = prepared.profiled(lh, method)
        record(step, np.exp(lh) * se, se, val)
        return val

    centre = 0.0
    if start is not None:
        st = np.asarray(start, dtype=float)
        if st.shape != (2,) or not np.all(np.isfinite(st)) or st[1] <= 0 or st[0] < 0:
            raise ModelError(f"start needs (sigma2_{term} >= 0, sigma2_Residual > 0), got {start!r}")
        centre = float(np.clip(np.log(max(st[0], 1e-300) / st[1]), -12.0, 12.0))
    grid = centre + np.linspace(-12, 12, 25)
    grid = grid[(grid >= LOG_H_BOUNDS[0]) & (grid <= LOG_H_BOUNDS[1])]
    vals = [f(g, "grid") for g in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if i == 0:
        lo = LOG_H_BOUNDS[0]
    if i == len(grid) - 1:
        hi = LOG_H_BOUNDS[1]
    res = so.minimize_scalar(
        f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10, "maxiter": max(int(max_iter), 1)}
    )
    log_h = float(res.x)
    val, se = prepared.profiled(log_h, method)
    if log_h >= LOG_H_BOUNDS[1] - 1e-6:
        st = prepared.state
        raise residual_at_zero_error(st.n, f"{st.K.shape[0]} levels of {term!r}")
    sg, se = np.exp(log_h) * se, se
    # the unprofiled objective, as the Newton steps use; they need no b̂ or BLUPs (O(n²))
    val = prepared.evaluate([sg, se], method=method, solutions=False).m2ll
    # last_step: relative size of the Newton step computed at the final point (a
    # step too small to matter, or one rejected for not improving -2logL at
    # rounding level, both mean the point is the optimum to POLISH_TOL)
    steps, last_step = 0, np.inf
    for _ in range(5):
        try:
            ev = prepared.evaluate([sg, se], method=method, derivatives=True, solutions=False)
            step = np.linalg.solve(ev.ai, ev.score)
        except (np.linalg.LinAlgError, NotPositiveDefiniteError):
            break  # AI singular: Brent's point stands and is judged below
        last_step = float(np.max(np.abs(step) / np.array([sg, se])))
        new = (sg + step[0], se + step[1])
        if last_step < 1e-12 or not (new[0] > 0 and new[1] > 0):
            break
        new_val = prepared.evaluate(new, method=method, solutions=False).m2ll
        if new_val > val + 1e-12 * abs(val):
            break
        sg, se, val = new[0], new[1], new_val
        steps += 1
        record("newton", sg, se, new_val)
    # the boundary h = 0: V = σ²_e I, compare explicitly
    at_zero = prepared.profiled_at_zero(method)
    record("boundary", 0.0, at_zero[1], at_zero[0])
    boundary = at_zero[0] <= val + 1e-10 or log_h <= LOG_H_BOUNDS[0] + 1e-6
    log = pd.DataFrame(rows)
    iterations = int(res.nit) + steps
    info = dict(log=log, iterations=iterations, evaluations=len(rows), boundary=boundary)
    problems = []
    if not res.success:
        problems.append(f"Brent's search stopped after {res.nit} iterations (max_iter={max_iter})")
    if not boundary and last_step >= POLISH_TOL:
        problems.append(f"Newton polishing did not settle (last relative step {last_step:.3g})")
    info["converged"] = not problems
    info["message"] = "; ".join(problems)
    if problems:
        warnings.warn(
            ConvergenceWarning(
                f"REML (spectral solver) did not converge: {info['message']} "
                f"(last -2logL {min(val, at_zero[0]):.8f}); last evaluations:\n"
                f"{log.tail(5).to_string(index=False)}",
                log,
            ),
            stacklevel=3,
        )
    if boundary:
        return 0.0, at_zero[1], info
    return sg, se, info
