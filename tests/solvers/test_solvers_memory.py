"""The dense MME refuses, with its size, a model that would not fit in memory."""

import pandas as pd
import pytest

import henderson as h
from henderson.solvers.memory import check_dense_memory, dense_mme_bytes
from henderson.spec.model import build_spec


def test_dense_estimate_and_error_message(potato):
    spec = build_spec("Yield ~ Env + (1|Name)", potato)
    # Name (the only iid term) is eliminated: only X's 3 columns stay dense
    q = spec.terms[0].q
    assert dense_mme_bytes(spec) == 8 * (3 * 9 + q * 3)
    check_dense_memory(spec, available=10**9)  # fits: no error
    with pytest.raises(h.ModelError, match=r"need about .* GiB .* is available: use solver='sparse'"):
        check_dense_memory(spec, available=100)


def test_crossed_factors_count_both_terms():
    d = pd.DataFrame(
        {
            "a": [str(i % 50) for i in range(500)],
            "b": [str(i % 7) for i in range(500)],
            "y": [float(i % 13) for i in range(500)],
        }
    )
    spec = build_spec("y ~ 1 + (1|a) + (1|b)", d)
    # a (50 levels) is eliminated; b's 7 levels and the intercept stay: m = 8
    assert dense_mme_bytes(spec) == 8 * (3 * 64 + 50 * 8)


def test_fit_checks_before_the_dense_solver(potato, monkeypatch):
    import henderson.solvers.memory as mem

    monkeypatch.setattr(mem, "available_bytes", lambda: 1000)
    with pytest.raises(h.ModelError, match="dense mixed model equations need"):
        h.fit("Yield ~ Env + (1|Name)", potato, solver="dense")
