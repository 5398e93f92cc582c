"""Fixed-part syntax (``- 1``, ``0 +``, interactions) against independent computations,
and the order of level ids.

The reference for a fixed part is a design matrix built here with numpy (no
formulaic): REML variance components and the fitted fixed part Xb̂ do not depend on
how X is parametrised, only on its column space, so they must agree with a
brute-force REML on the hand-built X — stationary at henderson's estimate — and with
the GLS fit at that estimate.
"""

import numpy as np
import pandas as pd
import pytest
from conftest import dummies, load_ref

import henderson as h
from henderson.errors import ModelError
from henderson.spec.formula import parse_formula

POTATO = load_ref("dt_example.json")


def brute_force(y, X, ZZt, s):
    """−2 log L_REML (up to a constant in X's parametrisation) and the GLS fit Xb̂."""
    n = len(y)
    V = s[0] * ZZt + s[1] * np.eye(n)
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    b = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ b
    m2ll = np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r
    return m2ll, X @ b


def assert_reml_matches_hand_design(res, d, X):
    y = d["Yield"].to_numpy(float)
    Z = dummies(d["Name"])
    ZZt = Z @ Z.T
    s = res.sigma2.to_numpy()
    # stationarity of the brute-force REML at our estimate: a central difference of
    # −2logL per relative change of each σ² (1e-4) is O(1e-8) at an optimum converged
    # to 1e-8, and O(1e-1) a mere 1e-3 away from it: 1e-5 separates the two
    for i in range(2):
        e = np.zeros(2)
        e[i] = 1e-4 * s[i]
        slope = (brute_force(y, X, ZZt, s + e)[0] - brute_force(y, X, ZZt, s - e)[0]) / 2e-4
        assert abs(slope) < 1e-5, (i, slope)
    _, fit_b = brute_force(y, X, ZZt, s)
    Zu = res.fitted.to_numpy() - fit_b  # fitted = Xb̂ + Zû
    u = res.blups["Name"]["blup"].reindex(np.unique(d["Name"].astype(str))).to_numpy()
    np.testing.assert_allclose(Zu, Z @ u, atol=1e-8)  # both exact solves at the same σ²


@pytest.mark.parametrize(
    "formula",
    [
        "Yield ~ Env + (1|Name) - 1",
        "Yield ~ -1 + Env + (1|Name)",
        "Yield ~ 0 + Env + (1|Name)",
        "Yield ~ (1|Name) + Env - 1",
    ],
)
def test_intercept_removal_anywhere(potato, formula):
    res = h.fit(formula, potato)
    assert list(res.fixed_effects.index) == ["Env[CA.2011]", "Env[CA.2012]", "Env[CA.2013]"]
    # same column space as lme4's Yield ~ Env: lme4's variances (1e-5 relative, the issue's
    # tolerance), and its intercept is the CA.2011 cell mean
    vc = POTATO["lme4"]["varcomp"]
    assert res.sigma2["Name"] == pytest.approx(vc["Name"], rel=1e-5)
    assert res.sigma2["Residual"] == pytest.approx(vc["Residual"], rel=1e-5)
    fe = POTATO["lme4"]["fixef"]["values"]
    np.testing.assert_allclose(res.fixed_effects["estimate"], [fe[0], fe[0] + fe[1], fe[0] + fe[2]], atol=1e-6)
    assert_reml_matches_hand_design(res, potato, dummies(potato["Env"]))


def test_random_term_cannot_be_subtracted():
    with pytest.raises(h.ModelError, match="cannot be removed"):
        parse_formula("y ~ x - (1|g)")


def test_signs_inside_parentheses_stay_with_the_term():
    p = parse_formula("y ~ I(x - 1) + (1|g) - 1")
    assert p.fixed == "I(x - 1) - 1" and [t.name for t in p.random] == ["g"]


def test_no_fixed_effects_at_all(potato):
    # lme4 accepts y ~ 0 + (1|g); V-based brute force: REML = ML when p = 0
    res = h.fit("Yield ~ (1|Name) - 1", potato)
    assert res.fixed_effects.empty
    y = potato["Yield"].to_numpy(float)
    Z = dummies(potato["Name"])
    s = res.sigma2.to_numpy()
    for i in range(2):
        e = np.zeros(2)
        e[i] = 1e-4 * s[i]
        V = lambda v: v[0] * Z @ Z.T + v[1] * np.eye(len(y))  # noqa: E731
        f = lambda v, V=V: np.linalg.slogdet(V(v))[1] + y @ np.linalg.solve(V(v), y)  # noqa: E731
        assert abs((f(s + e) - f(s - e)) / 2e-4) < 1e-5


def test_interaction_with_covariate(potato):
    # Env:Weight — one Weight slope per environment, plus the intercept
    res = h.fit("Yield ~ Env:Weight + (1|Name)", potato)
    assert res.fixed_effects.shape[0] == 4
    E = dummies(potato["Env"])
    X = np.column_stack([np.ones(len(potato)), E * potato["Weight"].to_numpy()[:, None]])
    assert_reml_matches_hand_design(res, potato, X)


def test_crossed_interaction_factor_by_covariate(potato):
    # Env*Weight = Env + Weight + Env:Weight (6 columns)
    res = h.fit("Yield ~ Env*Weight + (1|Name)", potato)
    assert res.fixed_effects.shape[0] == 6
    E = dummies(potato["Env"])
    w = potato["Weight"].to_numpy()[:, None]
    X = np.column_stack([E, E * w])
    assert_reml_matches_hand_design(res, potato, X)


def test_interaction_with_nested_factor_drops_aliased_columns(potato):
    # Block (CA.2013.1, ...) is nested in Env, so Env*Block spans exactly the Block
    # dummies: the aliased columns are dropped with a note and the fit is Block's
    n_blocks = potato["Block"].nunique()
    with pytest.warns(h.errors.DataWarning, match="aliased"):
        res = h.fit("Yield ~ Env*Block + (1|Name)", potato)
    assert res.fixed_effects.shape[0] == n_blocks
    assert any("aliased" in n for n in res.notes)
    assert_reml_matches_hand_design(res, potato, dummies(potato["Block"]))


def test_integer_ids_in_natural_order():
    rng = np.random.default_rng(0)
    g = np.repeat([10, 2, 1, 33, 7, 100, 4, 21], 4)
    d = pd.DataFrame({"g": g, "y": rng.normal(size=g.size) + np.repeat(rng.normal(size=8), 4)})
    res = h.fit("y ~ 1 + (1|g)", d)
    assert list(res.blups["g"].index) == ["1", "2", "4", "7", "10", "21", "33", "100"]
    # nested a:b combinations: by a, then by b, each in natural order
    d["b"] = np.tile([1, 12, 3, 2], 8)
    res = h.fit("y ~ 1 + (1|g:b)", d, sigma2=[1.0, 1.0])  # one record per g:b: known variances
    assert list(res.blups["g:b"].index[:5]) == ["1:1", "1:2", "1:3", "1:12", "2:1"]


def test_text_ids_stay_in_text_order():
    rng = np.random.default_rng(1)
    g = np.repeat(["b10", "b2", "a1", "B7"], 5)
    d = pd.DataFrame({"g": g, "y": rng.normal(size=g.size) + np.repeat(rng.normal(size=4), 5)})
    res = h.fit("y ~ 1 + (1|g)", d)
    assert list(res.blups["g"].index) == sorted(set(g))


def test_model_layer_formula_is_built_not_parsed_and_equals_the_parsed_text():
    """Issue 15: the genetic models build ``trait ~ fixed + (1|id)`` as a ParsedFormula
    (no text re-read); it is the same object the parser gives for the written formula."""
    from henderson.spec.formula import add_random_terms, parse_formula, random_intercept_formula

    built = random_intercept_formula("y", "x + C(herd)", "id")
    assert built == parse_formula("y ~ x + C(herd) + (1|id)")
    assert parse_formula(built) is built
    more = add_random_terms(built, "(1|MOTHER) + (1|BYEAR)")
    assert more.random == parse_formula("y ~ x + C(herd) + (1|id) + (1|MOTHER) + (1|BYEAR)").random
    with pytest.raises(ModelError, match="given twice"):
        add_random_terms(built, "(1|id)")
    with pytest.raises(ModelError, match="random= takes random terms"):
        add_random_terms(built, "herd")


def test_formula_columns_come_from_the_one_parser():
    """Responses, fixed part (formulaic), slopes, leg() covariates and nested groups."""
    from henderson.spec.formula import formula_variables, random_groups, random_term_names

    f = "cbind(y1, y2) ~ x + np.log(dose) + C(block) + us(leg(dim, 2)|animal) + (1|a/b)"
    assert formula_variables(f) == ["y1", "y2", "x", "dose", "block", "dim", "animal", "a", "b"]
    assert random_groups(f) == ["animal", "a", "b"]
    assert random_term_names(f) == ["animal", "a", "a:b"]
    with pytest.raises(ModelError, match="cannot read the fixed part"):
        formula_variables("y ~ x + * z")
