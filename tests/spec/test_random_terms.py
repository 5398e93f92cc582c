"""random= text of the genetic models, read once by spec.formula.random_terms (no formula
text is built around it to be parsed again), and the across-trait diag(1|g) rule."""

import pandas as pd
import pytest

import henderson as hd
from henderson.errors import ModelError
from henderson.spec.formula import across_trait_diagonal, parse_formula, random_terms


def test_random_terms_are_those_of_the_same_formula():
    ours = random_terms("(1|MOTHER) + diag(1|BYEAR)")
    ref = parse_formula("cbind(a, b) ~ 1 + (1|MOTHER) + diag(1|BYEAR)", multitrait=True).random
    assert [(t.name, t.columns, t.declared) for t in ours] == [(t.name, t.columns, t.declared) for t in ref]
    assert across_trait_diagonal(ours) == {"BYEAR"}


@pytest.mark.parametrize(
    "text, match",
    [
        ("x", "random= takes random terms"),
        ("(1|MOTHER) - (1|BYEAR)", "random= takes random terms"),
        ("(1|MOTHER) + (1|MOTHER)", "given twice"),
    ],
)
def test_random_terms_refuse_what_is_not_a_random_term(text, match):
    with pytest.raises(ModelError, match=match):
        random_terms(text)


def test_diag_across_traits_takes_an_intercept_only():
    with pytest.raises(ModelError, match=r"diag\(1\|g\)"):
        across_trait_diagonal(random_terms("diag(0 + x|g)"))


def test_multitrait_pedigree_blup_refuses_a_fixed_term_in_random():
    # "x" in random= was read as a fixed effect of a formula built around it, then
    # dropped (the fixed part comes from fixed=): now an error naming it
    ped = pd.DataFrame({"id": ["a", "b", "c"], "sire": [None, None, "a"], "dam": [None, None, "b"]})
    y = pd.DataFrame({"p": [1.0, 2.0, 3.0], "q": [0.5, 0.1, 0.7]}, index=["a", "b", "c"])
    with pytest.raises(ModelError, match="random= takes random terms.*'x'"):
        hd.PedigreeBLUP(traits=["p", "q"], random="x").fit(ped, y, data=pd.DataFrame({"x": [1, 2, 3]}, index=y.index))
