"""Likelihood-ratio tests: the statistic, the boundary-corrected p-value, AIC/BIC.

The p-values are recomputed here from scipy's χ² tails (the mixture rule of Stram &
Lee 1994); AIC is checked against lme4's for sleepstudy (Days|Subject): REMLcrit
1743.628272 (refs/structures/sleepstudy.json) + 2 × 6 parameters.
"""

import numpy as np
import pytest
from conftest import load_ref
from scipy import stats

import henderson as h
from henderson.datasets import load_lme4


@pytest.fixture(scope="module")
def sleep():
    d = load_lme4("sleepstudy")
    return (
        h.fit("Reaction ~ Days + (1|Subject)", d),
        h.fit("Reaction ~ Days + (Days||Subject)", d),
        h.fit("Reaction ~ Days + (Days|Subject)", d),
    )


def test_random_slope_with_covariance_is_a_chi2_1_2_mixture(sleep):
    small, _, big = sleep
    t = h.lrt(small, big)
    assert t.df == 2
    assert t.statistic == pytest.approx(2 * (big.loglik - small.loglik), rel=1e-12)
    assert t.p_value == pytest.approx(0.5 * stats.chi2.sf(t.statistic, 1) + 0.5 * stats.chi2.sf(t.statistic, 2))
    assert t.p_value_naive == pytest.approx(stats.chi2.sf(t.statistic, 2))
    assert t.p_value < t.p_value_naive and "mixture of chi2_1 and chi2_2" in t.reference


def test_one_variance_at_zero_halves_the_p_value(sleep):
    small, diag, _ = sleep
    t = h.lrt(small, diag)
    assert t.df == 1
    assert t.p_value == pytest.approx(0.5 * stats.chi2.sf(t.statistic, 1), rel=1e-12)
    # a covariance tested at 0 is interior: plain chi2_1
    _, diag, us = sleep
    t2 = h.lrt(diag, us)
    assert t2.df == 1 and t2.reference == "chi2_1"
    assert t2.p_value == pytest.approx(stats.chi2.sf(t2.statistic, 1))


def test_aic_bic_as_lme4(sleep):
    big = sleep[2]
    crit = load_ref("structures/sleepstudy.json")["key_numbers"]["a_correlated"]["REMLcrit"]
    assert big.aic == pytest.approx(crit + 2 * 6, abs=1e-6)
    assert big.bic == pytest.approx(crit + 6 * np.log(180), abs=1e-6)
    t = h.lrt(sleep[0], big)
    assert list(t.table["AIC"]) == [sleep[0].aic, big.aic]


def test_lrt_refuses_non_comparable_fits(sleep):
    d = load_lme4("sleepstudy")
    other = h.fit("Reaction ~ 1 + (Days|Subject)", d)
    with pytest.raises(h.ModelError, match="different fixed effects"):
        h.lrt(sleep[0], other)
    with pytest.raises(h.ModelError, match="pass \\(small, big\\)"):
        h.lrt(sleep[2], sleep[0])
    ml = h.fit("Reaction ~ Days + (Days|Subject)", d, method="ml")
    with pytest.raises(h.ModelError, match="same method"):
        h.lrt(sleep[0], ml)
