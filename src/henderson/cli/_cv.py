"""Cross-validation for the command line: build the model and X from files, run, write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ._common import Session
from ._errors import CLIError, cli_words
from ._inputs import read_genotypes_file, read_pedigree_file, read_phenotypes, read_relationship_file, require_columns

#: Columns of cv_metrics.csv, in order (the rest follow).
METRIC_ORDER = [
    "model",
    "repeat",
    "fold",
    "n_train",
    "n_test",
    "n_scored",
    "r",
    "accuracy",
    "slope",
    "intercept",
    "mse",
    "spearman",
    "top_overlap",
    "sigma2_g",
    "sigma2_e",
    "h2",
    "method",
]


def order_metrics(fm: pd.DataFrame) -> pd.DataFrame:
    """Columns in METRIC_ORDER; rows by model, repeat and fold (numeric folds numerically)."""
    from ..report.sections import _fold_key

    if "n" in fm and "n_test" in fm:
        # "n" (records scored) repeats n_test unless some test predictions were missing
        same = (fm["n"].to_numpy() == fm["n_test"].to_numpy()).all()
        fm = fm.drop(columns="n") if same else fm.rename(columns={"n": "n_scored"})
    cols = [c for c in METRIC_ORDER if c in fm] + [c for c in fm if c not in METRIC_ORDER]
    fm = fm[cols]
    if "fold" in fm and "repeat" in fm:
        key = fm["fold"].map(_fold_key)
        models = pd.Categorical(fm["model"], categories=list(dict.fromkeys(fm["model"]))) if "model" in fm else 0
        fm = (
            fm.assign(_m=models, _k=key)
            .sort_values(["_m", "repeat", "_k"], kind="stable")
            .drop(columns=["_m", "_k"])
            .reset_index(drop=True)
        )
    return fm


def cv_summary_table(fm: pd.DataFrame) -> pd.DataFrame:
    """Per model: predictive ability r (mean ± sd over folds), slope, accuracy, MSE."""
    fm = fm if "model" in fm else fm.assign(model="model")
    g = fm.groupby("model", sort=False)
    out = pd.DataFrame(
        {
            "folds": g["r"].count(),
            "r": g["r"].mean(),
            "r sd": g["r"].std(ddof=1),
            "r/√h²": g["accuracy"].mean() if "accuracy" in fm else float("nan"),
            "slope": g["slope"].mean() if "slope" in fm else float("nan"),
            "MSE": g["mse"].mean() if "mse" in fm else float("nan"),
        }
    )
    out.index.name = "model"
    return out


def run_cv(
    s: Session,
    *,
    model: str,
    phenotypes: Path,
    trait: str,
    genotypes,
    pedigree,
    grm,
    folds: int | str,
    repeats: int,
    groups,
    fold_column,
    seed: int,
    refit: bool,
    id_column: str,
    ped_columns: str,
    grm_method: str,
    jobs: int,
    fixed: str | None = None,
    method: str = "reml",
    drop_unknown: bool = False,
    coding: str | None = None,
    selfing: bool = False,
    scheduler: str | None = None,
    inputs: dict | None = None,
) -> None:
    """Read the files, cross-validate one model, write cv_predictions.csv, cv_metrics.csv,
    report.html and summary.json. The model options mean what they mean for the fitting
    commands (gblup, snpblup, pblup)."""
    from ..cv import cross_validate
    from ..estimators import GBLUP, SNPBLUP, PedigreeBLUP
    from ..report.html import Report
    from ..report.sections import add_cv
    from .genetic_cmd import _ped_cols, check_fixed

    model = model.lower().replace("-", "")
    if model not in ("gblup", "snpblup", "pblup"):
        raise CLIError(f"--model must be gblup, snpblup or pblup, not {model!r}")
    method = method.lower()
    if method not in ("reml", "ml"):
        raise CLIError(f"--method must be reml or ml, not {method!r}")
    if model == "pblup" and (genotypes is not None or grm is not None):
        raise CLIError("--model pblup takes --pedigree, not --genotypes or --grm")
    if model != "pblup" and pedigree is not None:
        raise CLIError(
            f"--model {model} takes --genotypes" + (" or --grm" if model == "gblup" else "") + ", not --pedigree"
        )
    missing = "drop" if drop_unknown else "error"
    s.settings.update(
        {
            "model": model,
            "trait": trait,
            "fixed": fixed,
            "method": method,
            "missing": missing,
            "folds": folds,
            "repeats": repeats,
            "groups": groups,
            "fold_column": fold_column,
            "seed": seed,
            "refit_variances": refit,
            "jobs": jobs,
        }
    )
    from .genetic_cmd import input_options

    opts = inputs or input_options()
    with s.step("Reading phenotypes"):
        y, data, frame = read_phenotypes(
            phenotypes,
            trait,
            id_column,
            fixed,
            na_values=opts["na_values"],
            decimal=opts["decimal"],
            one_record_per_id=not opts["repeated_records"],
        )
        s.add_input("phenotypes", phenotypes)
        check_fixed(frame, fixed)
    ids = frame[id_column].astype(str).str.strip().to_numpy(dtype=object)
    cv_arg, grp = folds, None
    if folds == "loo" and repeats != 1:
        s.warn("--leave-one-out has one fold assignment: --repeats set to 1")
        repeats = 1
    if fold_column:
        require_columns(frame, [fold_column], option="--fold-column")
        cv_arg = _labels(frame[fold_column], ids)  # missing fold = always in training
        if repeats != 1:
            s.warn("--fold-column gives fixed folds: --repeats set to 1")
            repeats = 1
    if groups:
        require_columns(frame, [groups], option="--groups")
        grp = _labels(frame[groups], ids)
    if model in ("gblup", "snpblup"):
        if model == "gblup" and grm is not None:
            if genotypes is not None:
                raise CLIError("give --genotypes or --grm, not both")
            with s.step("Reading the relationship matrix"):
                X = read_relationship_file(grm, kind="G")
                s.add_input("grm", grm)
        else:
            if genotypes is None:
                raise CLIError(
                    f"--model {model} needs --genotypes FILE" + (" (or --grm FILE)" if model == "gblup" else "")
                )
            with s.step("Reading genotypes"):
                X = read_genotypes_file(genotypes, coding)
                s.add_input("genotypes", genotypes)
            from .genetic_cmd import _model_genotypes

            geno_report: dict = {}
            X = _model_genotypes(s, X, opts, geno_report)
            s.settings["genotypes"] = geno_report.get("genotypes")
        if model == "gblup":
            s.settings["grm_method"] = grm_method
            est = GBLUP(method=method, grm=grm_method, fixed=fixed, missing=missing)
        else:
            est = SNPBLUP(method=method, fixed=fixed, missing=missing)
    else:
        if pedigree is None:
            raise CLIError("--model pblup needs --pedigree FILE")
        with s.step("Reading pedigree"):
            X, notes = read_pedigree_file(
                pedigree,
                *_ped_cols(ped_columns),
                selfing=selfing,
                missing=opts["missing_parent"],
                birth_year=opts["birth_year"],
            )
            s.add_input("pedigree", pedigree)
        for note in notes:
            s.warn(note)
        est = PedigreeBLUP(method=method, fixed=fixed, missing=missing)
    label = {"gblup": "GBLUP", "snpblup": "SNP-BLUP", "pblup": "pedigree BLUP"}[model]
    with s.step(f"Cross-validating {label}", counted="folds", library_hook=False) as update:
        res = cross_validate(
            est,
            X,
            y,
            cv=cv_arg,
            repeats=repeats,
            refit_variances=refit,
            n_jobs=jobs,
            seed=seed,
            groups=grp,
            data=data,
            progress=update,
            scheduler=scheduler or None,
        )
    pred = res.predictions.copy()
    pred.insert(0, "model", label)
    fm = order_metrics(res.fold_metrics.assign(model=label))
    summ = cv_summary_table(fm)
    leak = getattr(res, "leakage_note", "") or None  # single-trait CVResult only
    if not s.quiet:
        s.stdout.print(f"{label} cross-validation ({res.settings.get('scheme')}, {repeats} repeat(s)):")
        # mean ± sd over folds, and the metric pooled over all out-of-fold predictions
        # (the headline when folds are tiny, e.g. leave-one-out)
        cols = ["mean", "sd", "n_folds", "pooled"] if "pooled" in res.summary else ["mean", "sd", "n_folds"]
        s.stdout.print(res.summary[cols].to_string(float_format=lambda v: f"{v:.4f}", na_rep="—"))
    if leak:
        s.warn(cli_words(leak))
    with s.step("Writing outputs"):
        s.write_csv(pred, "cv_predictions.csv")
        s.write_csv(fm, "cv_metrics.csv")
        rep = Report(f"Cross-validation: {label}, {trait}", f"{Path(phenotypes).name} — {res.settings.get('scheme')}")
        n_obs = int(y.notna().sum())
        kv = {
            "model": label,
            "trait": trait,
            "fixed effects": fixed or "intercept",
            "method": method.upper(),
            "folds": f"{res.settings.get('scheme')}, {repeats} repeat(s), seed {seed}"
            + (f", groups from column {groups}" if groups else ""),
            "variances": "re-estimated by REML in every fold"
            if refit
            else "held at the full-data REML estimates (--fixed-variances)",
            "records": f"{n_obs:,} with a value of {trait}" + _scored_note(pred, n_obs),
        }
        # what the folds left out or could not measure, counted (also in summary.json's warnings)
        said = " ".join(cli_words(n) + "." for n in res.settings.get("notes", []))
        add_cv(rep, pred, fm, summ, note=" ".join(x for x in (cli_words(leak) if leak else "", said) if x), settings=kv)
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.write_summary(
            {
                "cv_settings": res.settings,
                "summary": res.summary.to_dict(orient="index"),
                "genotypes": s.settings.pop("genotypes", None),
                "leakage_note": cli_words(leak) if leak else None,
            }
        )
    s.done()


def _scored_note(pred: pd.DataFrame, n_obs: int) -> str:
    """How many records were predicted out of fold, when not all of them were."""
    first = pred[pred["repeat"] == pred["repeat"].min()] if "repeat" in pred else pred
    n = int(first["predicted_bv"].notna().sum())
    return "" if n == n_obs else f"; {n:,} of them predicted out of fold and scored"


def _labels(column: pd.Series, ids) -> pd.Series:
    """Fold or group labels by id as strings, keeping missing values missing (not "nan")."""
    lab = column.astype(object).where(column.notna(), None)
    # a numeric column with gaps is read as float: fold 5.0 is fold 5
    lab = lab.map(lambda v: None if v is None else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    return pd.Series(lab.to_numpy(dtype=object), index=pd.Index(ids, name="id"))
