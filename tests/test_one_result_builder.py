"""Every single-trait engine's FitResult is made by the one builder, ``assemble.fit_result``.

Each fit below runs with ``assemble.fit_result`` wrapped to record its calls: exactly one call
per fit, whose ``Run.solver`` is the result's solver, for the dense, sparse and spectral
engines, the structured engines (dense C-form, sparse, V-form) and PCG (single-trait and on a
structured model). The numbers the builder gives are checked elsewhere (engine references,
tests/solvers); here only the route.
"""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson import assemble
from henderson.datasets import load_potato

MET = "Yield ~ Env + us(0 + Env|Name)"
MET_THETA = [4.0, 2.0, 5.0, 1.0, 3.0, 6.0, 5.0]


@pytest.fixture(scope="module")
def potato():
    d = load_potato()
    names = sorted(d["Name"].unique())
    M = np.random.default_rng(1).normal(size=(len(names), 30))
    K = pd.DataFrame(M @ M.T / 30 + 0.05 * np.eye(len(names)), index=names, columns=names)
    return d, K


CASES = {
    "dense-mme": lambda d, K: h.fit("Yield ~ Env + (1|Name)", d, solver="dense"),
    "sparse-mme": lambda d, K: h.fit("Yield ~ Env + (1|Name)", d, solver="sparse"),
    "spectral": lambda d, K: h.fit("Yield ~ Env + (1|Name)", d, cov={"Name": K}, solver="spectral", pev=False),
    "pcg": lambda d, K: h.fit("Yield ~ Env + (1|Name)", d, solver="pcg", sigma2=[4.0, 5.0]),
    "dense-general": lambda d, K: h.fit(MET, d, solver="dense"),
    "sparse-general": lambda d, K: h.fit(MET, d, solver="sparse"),
    "vform-general": lambda d, K: h.fit(MET, d, cov={"Name": K}, solver="vform"),
    "general-pcg": lambda d, K: h.fit(MET, d, solver="pcg", sigma2=MET_THETA),
}


@pytest.mark.parametrize("solver", list(CASES))
def test_every_engine_goes_through_fit_result(potato, solver, monkeypatch):
    calls = []
    builder = assemble.fit_result

    def counting(spec, ev, run):
        calls.append(run.solver)
        return builder(spec, ev, run)

    monkeypatch.setattr(assemble, "fit_result", counting)
    res = CASES[solver](*potato)
    assert res.solver == solver
    assert calls == [solver]


def test_no_other_builders_left():
    import importlib.util

    assert not hasattr(assemble, "mme_result")
    assert importlib.util.find_spec("henderson.assemble_pcg") is None
    from henderson import assemble_general

    assert not hasattr(assemble_general, "general_result")
