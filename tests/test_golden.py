"""Golden masters: a FitResult summary per reference data set, stored and compared to 1e-8.

``tests/data/golden/<dataset>.json`` holds what ``henderson.fit`` returned for each
reference data set (variance components with SEs, fixed effects with SEs, the first 20
BLUPs with PEVs, log L, the settings): any change to any of them beyond 1e-8 shows up
here, whichever solver the fit takes ("auto": dense for potato and Penicillin, sparse
for gryphon, spectral for wheat). Tolerances: 1e-8 relative for variances, SEs and
PEVs; 1e-8 × sd(y) absolute for fixed effects and BLUPs; 1e-8 absolute for log L.

The files change only with ``pytest tests/test_golden.py --regen-golden``, which
refuses to write unless src/ has no uncommitted changes and the new fit passes the
independent-reference checks below; the file records the commit it came from.
``test_golden_agrees_with_reference`` holds the *stored* numbers to the independent
references (lme4, ASReml, rrBLUP's tight REML optimum) at their own tolerances, so a
golden file cannot drift from them unnoticed.
"""

import json
import subprocess
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REFS, load_ref

import henderson as h
from henderson.datasets import load_gryphon, load_lme4, load_potato, load_wheat

GOLDEN = Path(__file__).parent / "data" / "golden"
ROOT = Path(__file__).parent.parent
N_BLUPS = 20
# settings that say which software ran, not what was fitted: stored, not compared
VERSION_KEYS = {"version", "numpy", "scipy", "pandas", "python"}


def problem(name: str) -> tuple[str, pd.DataFrame, dict, str]:
    """(formula, data, covariance keywords, response column) of a reference data set."""
    if name == "potato":
        return "Yield ~ Env + (1|Name)", load_potato(), {}, "Yield"
    if name == "Penicillin":
        return "diameter ~ 1 + (1|plate) + (1|sample)", load_lme4("Penicillin"), {}, "diameter"
    if name == "gryphon":
        g = load_gryphon()
        return "BWT ~ SEX + (1|ANIMAL)", g.records, {"cov_inverse": {"ANIMAL": h.pedigree_inverse(g.pedigree)}}, "BWT"
    if name == "wheat":
        K = pd.read_csv(REFS / "wheat_Amat_rrblup.csv.gz", index_col=0)
        K.index, K.columns = K.index.astype(str), K.columns.astype(str)
        return "env1 ~ 1 + (1|id)", load_wheat().phenotypes.reset_index(), {"cov": {"id": K}}, "env1"
    raise KeyError(name)


CALLS = {
    "potato": "h.fit('Yield ~ Env + (1|Name)', load_potato())",
    "Penicillin": "h.fit('diameter ~ 1 + (1|plate) + (1|sample)', load_lme4('Penicillin'))",
    "gryphon": "h.fit('BWT ~ SEX + (1|ANIMAL)', g.records, cov_inverse={'ANIMAL': h.pedigree_inverse(g.pedigree)})"
    " with g = load_gryphon()",
    "wheat": "h.fit('env1 ~ 1 + (1|id)', load_wheat().phenotypes.reset_index(), cov={'id': K})"
    " with K = tests/data/refs/wheat_Amat_rrblup.csv.gz (rrBLUP A.mat)",
}
DATASETS = [pytest.param(n, marks=[pytest.mark.slow] if n in ("gryphon", "wheat") else []) for n in CALLS]


def fit(name: str) -> h.FitResult:
    formula, data, kw, _ = problem(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", h.DataWarning)  # gryphon: 230 records without BWT
        return h.fit(formula, data, **kw)


def summary(res: h.FitResult) -> dict:
    """The compared part of a FitResult, as plain JSON."""
    vc, fe = res.variance_components, res.fixed_effects
    return {
        "solver": res.solver,
        "method": res.method,
        "n_obs": int(res.n_obs),
        "converged": bool(res.converged),
        "loglik": float(res.loglik),
        "variance_components": {
            "names": list(vc.index),
            "variance": vc["variance"].tolist(),
            "se": vc["se"].tolist(),
            "boundary": [bool(b) for b in vc["boundary"]],
        },
        "fixed_effects": {"names": list(fe.index), "estimate": fe["estimate"].tolist(), "se": fe["se"].tolist()},
        "blups": {
            term: {
                "n_levels": len(b),
                "ids": [str(i) for i in b.index[:N_BLUPS]],
                "blup": b["blup"].iloc[:N_BLUPS].tolist(),
                "pev": b["pev"].iloc[:N_BLUPS].tolist(),
            }
            for term, b in res.blups.items()
        },
        "settings": json.loads(json.dumps(res.settings, default=str)),
    }


def check_reference(name: str, s: dict) -> None:
    """A summary (stored or new) against the independent reference for its data set."""
    vc = dict(zip(s["variance_components"]["names"], s["variance_components"]["variance"], strict=True))
    fe = dict(zip(s["fixed_effects"]["names"], s["fixed_effects"]["estimate"], strict=True))
    if name == "potato":  # lme4 (tests/test_engine_references.py: the same tolerances)
        ref = load_ref("dt_example.json")["lme4"]
        assert vc["Name"] == pytest.approx(ref["varcomp"]["Name"], rel=1e-6)
        assert vc["Residual"] == pytest.approx(ref["varcomp"]["Residual"], rel=1e-6)
        np.testing.assert_allclose(list(fe.values()), ref["fixef"]["values"], atol=1e-6)
        assert s["loglik"] == pytest.approx(ref["logLik_REML"], abs=1e-6)
        lme4_u = dict(zip(ref["ranef_Name"]["names"], ref["ranef_Name"]["values"], strict=True))
        b = s["blups"]["Name"]
        np.testing.assert_allclose(b["blup"], [lme4_u[i] for i in b["ids"]], atol=1e-6)
    elif name == "Penicillin":  # lme4: bobyqa stops 1e-4 relative off in a flat direction
        ref = load_ref("lme4_datasets.json")["Penicillin"]["reml"]
        for row in ref["varcomp"]:
            assert vc[row["grp"]] == pytest.approx(row["vcov"], rel=1e-4), row["grp"]
        assert fe["(Intercept)"] == pytest.approx(ref["fixef"]["values"], abs=1e-6)
        assert s["loglik"] == pytest.approx(ref["logLik"], abs=1e-6)
    elif name == "gryphon":  # ASReml-R model 2 (tests/models/test_models_gryphon.py explains 2e-5)
        ref = load_ref("gryphon_asreml.json")["models"]["model2"]
        assert vc["ANIMAL"] == pytest.approx(ref["varcomp"]["animal"]["component"], rel=2e-5)
        assert vc["Residual"] == pytest.approx(ref["varcomp"]["residual"]["component"], rel=2e-5)
        assert fe["(Intercept)"] == pytest.approx(ref["fixed"]["(Intercept)"]["solution"], abs=1e-5)
        assert fe["SEX[T.2]"] == pytest.approx(ref["fixed"]["SEX_2"]["solution"], abs=1e-5)
        # ASReml's log L omits (n - p)/2 log 2π and is printed to 3 decimals
        asreml = s["loglik"] + 0.5 * ref["n_minus_p"] * np.log(2 * np.pi)
        assert asreml == pytest.approx(ref["loglik"], abs=5e-4 + 1e-6)
    elif name == "wheat":  # rrBLUP's model at a tight REML optimum (wheat_rrblup.json)
        ex = load_ref("wheat_rrblup.json")["exact_reml_optimum"]["gblup"]
        assert vc["id"] == pytest.approx(ex["Vu"], rel=1e-6)
        assert vc["Residual"] == pytest.approx(ex["Ve"], rel=1e-6)
        assert s["loglik"] == pytest.approx(ex["loglik_full"], abs=1e-6)
    else:
        raise KeyError(name)


def compare(new: dict, old: dict, sd: float, name: str) -> None:
    """new against the stored summary at 1e-8 (see the module docstring)."""
    for key in ("solver", "method", "n_obs", "converged"):
        assert new[key] == old[key], f"{name}: {key}"
    assert new["loglik"] == pytest.approx(old["loglik"], rel=0, abs=1e-8), f"{name}: loglik"
    nv, ov = new["variance_components"], old["variance_components"]
    assert nv["names"] == ov["names"] and nv["boundary"] == ov["boundary"], name
    for key in ("variance", "se"):
        np.testing.assert_allclose(nv[key], ov[key], rtol=1e-8, atol=0, err_msg=f"{name}: {key}")
    nf, of = new["fixed_effects"], old["fixed_effects"]
    assert nf["names"] == of["names"], name
    np.testing.assert_allclose(nf["estimate"], of["estimate"], rtol=0, atol=1e-8 * sd, err_msg=f"{name}: fixed")
    np.testing.assert_allclose(nf["se"], of["se"], rtol=1e-8, atol=0, err_msg=f"{name}: fixed se")
    assert sorted(new["blups"]) == sorted(old["blups"]), name
    for term, ob in old["blups"].items():
        nb = new["blups"][term]
        assert nb["n_levels"] == ob["n_levels"] and nb["ids"] == ob["ids"], f"{name}: {term} levels"
        np.testing.assert_allclose(nb["blup"], ob["blup"], rtol=0, atol=1e-8 * sd, err_msg=f"{name}: {term}")
        np.testing.assert_allclose(nb["pev"], ob["pev"], rtol=1e-8, atol=0, err_msg=f"{name}: {term} pev")
    ns = {k: v for k, v in new["settings"].items() if k not in VERSION_KEYS}
    os_ = {k: v for k, v in old["settings"].items() if k not in VERSION_KEYS}
    assert flat(ns).keys() == flat(os_).keys(), name
    for key, value in flat(os_).items():  # floats (the y scale) to 1e-8, the rest exactly
        want = pytest.approx(value, rel=1e-8) if isinstance(value, float) else value
        assert flat(ns)[key] == want, f"{name}: settings {key}"


def flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def write_golden(name: str, s: dict) -> None:
    """Write tests/data/golden/<name>.json from committed source only."""
    dirty = git("status", "--porcelain", "--", "src")
    if dirty:
        pytest.fail(f"--regen-golden refuses to write {name}.json: src/ has uncommitted changes:\n{dirty}")
    check_reference(name, s)  # never store numbers that miss the independent reference
    about = {
        "what": f"golden-master FitResult summary of {CALLS[name]}; compared by tests/test_golden.py",
        "generated": f"pytest tests/test_golden.py --regen-golden at commit {git('rev-parse', 'HEAD')} "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC), whose tests against the independent references pass "
        "(tests/test_engine_references.py, tests/models/test_models_gryphon.py, tests/models/test_models.py, "
        "and check_reference in tests/test_golden.py)",
        "tolerances": "1e-8 relative (variances, SEs, PEVs); 1e-8 x sd(y) absolute (fixed effects, BLUPs); "
        "1e-8 absolute (loglik)",
    }
    GOLDEN.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"about": about, "dataset": name, **s}, indent=1, allow_nan=False)
    (GOLDEN / f"{name}.json").write_text(text + "\n")


@pytest.mark.parametrize("name", DATASETS)
def test_fit_matches_golden(name, regen_golden):
    new = summary(fit(name))
    if regen_golden:
        write_golden(name, new)
    path = GOLDEN / f"{name}.json"
    assert path.exists(), f"{path} missing: run pytest tests/test_golden.py --regen-golden (see its README)"
    _, data, _, response = problem(name)
    compare(new, json.loads(path.read_text()), float(data[response].std()), name)


@pytest.mark.parametrize("name", list(CALLS))
def test_golden_agrees_with_reference(name):
    check_reference(name, json.loads((GOLDEN / f"{name}.json").read_text()))


def test_compare_notices_a_change():
    """The comparison fails on a BLUP moved by 1e-7 × sd(y) (so 1e-8 is really tested)."""
    old = json.loads((GOLDEN / "potato.json").read_text())
    new = json.loads(json.dumps(old))
    compare(new, old, 1.0, "potato")
    new["blups"]["Name"]["blup"][3] += 1e-7
    with pytest.raises(AssertionError, match="potato: Name"):
        compare(new, old, 1.0, "potato")
