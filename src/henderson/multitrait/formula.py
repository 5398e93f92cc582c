"""``cbind(y1, y2, ...) ~ fixed + (1|id) + diag(1|block)``: the multi-trait formula and its routing.

The fast path (:mod:`henderson.multitrait.spectral`) takes exactly one random term
``(1|g)`` with a dense known covariance ``cov={g: K}`` and complete records; it runs
whenever it applies (``solver="auto"``). Every other shape — several random terms,
``diag(1|g)`` (a term diagonal across traits), iid terms, a sparse inverse
``cov_inverse={g: A⁻¹}``, records missing some traits — runs on the general
multi-trait MME (:mod:`henderson.multitrait.general`). ``result.solver`` says which.
"""

from __future__ import annotations

import pandas as pd

from ..errors import ModelError
from ..spec.formula import is_multitrait, parse_formula, response_of  # noqa: F401 - is_multitrait re-exported

SOLVERS = ("auto", "spectral", "multitrait-spectral", "mme", "dense", "sparse", "vform", "pcg")


def parse_multitrait(formula: str) -> tuple[list[str], str, list, set]:
    """Traits, the fixed part (formulaic syntax), the random terms and the names of the
    ``diag(1|g)`` terms of a cbind formula (read by :func:`henderson.spec.formula.parse_formula`)."""
    parsed = parse_formula(formula, multitrait=True)
    if not parsed.traits:
        raise ModelError(f"cannot read the multi-trait response {response_of(formula)!r}: write cbind(y1, y2, ...)")
    from ..spec.formula import across_trait_diagonal

    return list(parsed.traits), parsed.fixed, list(parsed.random), across_trait_diagonal(parsed.random)


def fit_formula(
    formula: str,
    data: pd.DataFrame,
    cov=None,
    cov_inverse=None,
    *,
    method="reml",
    solver="auto",
    sigma=None,
    start=None,
    max_iter=500,
    pev="auto",
    fixed=None,
    tol=1e-10,
    pev_samples: int = 200,
    seed: int = 0,
):
    """``henderson.fit`` for a ``cbind(...)`` response; see :func:`henderson.fit`.

    ``solver``: "auto" (the spectral fast path when it applies, else the general MME; at
    given ``sigma`` above ``PCG_THRESHOLD`` equations, PCG), "spectral", "mme" / "dense" /
    "sparse" (the general MME with that back end), "vform" (REML over the observed values,
    :mod:`henderson.multitrait.vform`; "auto" takes it for missing traits with a dense K when
    it is the smaller problem), or "pcg" (given ``sigma`` only: :mod:`henderson.multitrait.pcg`).
    ``sigma``/``start`` are (Σ_g, Σ_e) for one term, or on the general MME
    ``{"Sigma": [Σ per term], "Residual": Σ_e}``. On PCG, ``pev="sample"`` (or True)
    estimates PEV by sampling (``pev_samples`` data sets, seeded by ``seed``) and gives
    exact fixed-effect SEs (:func:`henderson.multitrait.pcg.fit_traits_pcg`).
    """
    from ..relationships.container import as_relationship
    from .fit import check_traits, fit_traits
    from .general import fit_general_traits

    if method.lower() != "reml":
        raise ModelError("multi-trait models are fitted by REML only (method='reml')")
    if solver not in SOLVERS:
        raise ModelError(f"solver={solver!r}: multi-trait solvers are {', '.join(SOLVERS)}")
    traits, fixed_part, terms, diag = parse_multitrait(formula)
    cov, cov_inverse = dict(cov or {}), dict(cov_inverse or {})
    if not terms:
        raise ModelError("a multi-trait model needs a random term, e.g. (1|id) with cov={'id': K}")
    for term in terms:
        if len(term.columns) != 1:
            raise ModelError(
                f"random term (1|{term.name}) on an interaction: make the combined column first "
                f"(data['{term.name.replace(':', '_')}'] = ...) and use (1|that column)"
            )
        if term.name in cov and term.name in cov_inverse:
            raise ModelError(f"term {term.name!r} got both cov= and cov_inverse=; give one")
    unknown = sorted((set(cov) | set(cov_inverse)) - {t.name for t in terms})
    if unknown:
        raise ModelError(f"cov/cov_inverse name(s) {unknown} that are not random terms of {formula!r}")
    if fixed is not None:
        fixed_part = fixed  # per-trait dict overrides the formula's fixed part
    if not isinstance(data, pd.DataFrame):
        raise ModelError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    one = terms[0].name
    fast = (
        len(terms) == 1
        and one not in diag
        and one in cov
        and not as_relationship(cov[one], kind="K").is_sparse
        and solver in ("auto", "spectral", "multitrait-spectral")
    )
    if solver in ("spectral", "multitrait-spectral") and not fast:
        raise ModelError(
            "solver='spectral' needs exactly one random term (1|g) with a dense cov={g: K} "
            "(and complete records); this model runs on the general MME (solver='auto' or 'mme')"
        )
    if fast:
        return fit_traits(
            data,
            traits,
            one,
            cov[one],
            fixed=fixed_part,
            start=start,
            max_iter=max_iter,
            sigma=sigma,
            pev=pev,
            formula=formula,
        )
    kept, notes = check_traits(data, traits, one, allow_missing=True)

    def as_general(x):
        if x is None or isinstance(x, dict):
            return x
        if len(terms) == 1 and len(x) == 2:
            return {"Sigma": [x[0]], "Residual": x[1]}
        raise ModelError('sigma/start on the general MME: {"Sigma": [one matrix per term], "Residual": matrix}')

    term_list = [(t.name, t.name in diag) for t in terms]
    # at given Σ's, PCG by iteration on data (api_pcg_general.py; "auto" above PCG_THRESHOLD)
    from .pcg import fit_traits_pcg, prefers_pcg

    auto_pcg = solver == "auto" and sigma is not None and prefers_pcg(kept, traits, term_list, cov, cov_inverse)
    if solver == "pcg" or auto_pcg:
        return fit_traits_pcg(
            kept,
            traits,
            term_list,
            cov=cov,
            cov_inverse=cov_inverse,
            fixed=fixed_part,
            sigma=as_general(sigma),
            formula=formula,
            notes=notes,
            auto=auto_pcg,
            tol=tol,
            pev=pev,
            pev_samples=pev_samples,
            seed=seed,
        )
    return fit_general_traits(
        kept,
        traits,
        [(t.name, t.name in diag) for t in terms],
        cov=cov,
        cov_inverse=cov_inverse,
        fixed=fixed_part,
        start=as_general(start),
        sigma=as_general(sigma),
        max_iter=max_iter,
        backend="auto" if solver in ("auto", "mme") else solver,
        formula=formula,
        notes=notes,
        pev=pev,
    )
