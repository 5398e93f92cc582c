"""Cross-validation for the command line: build the model and X from files, run, write."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ._common import Session
from ._errors import CLIError, cli_words
from ._inputs import require_columns
from ._steps import GeneticOptions, checked_method, read_grm, read_model_genotypes, read_pedigree, read_trait

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


@dataclass(frozen=True)
class CVOptions:
    """How ``henderson cv`` splits and refits: the options beyond the model's."""

    folds: int | str = 5
    repeats: int = 1
    groups: str | None = None
    fold_column: str | None = None
    seed: int = 0
    refit: bool = True
    jobs: int = 1
    scheduler: str | None = None


_LABELS = {"gblup": "GBLUP", "snpblup": "SNP-BLUP", "pblup": "pedigree BLUP"}


def run_cv(s: Session, model: str, o: GeneticOptions, c: CVOptions) -> None:
    """Read the files, cross-validate one model, write cv_predictions.csv, cv_metrics.csv,
    report.html and summary.json. The model options mean what they mean for the fitting
    commands (gblup, snpblup, pblup)."""
    from ..cv import cross_validate

    model = _checked_model(model, o)
    o = replace(o, method=checked_method(o.method))
    _record_settings(s, model, o, c)
    y, data, frame = read_trait(s, o)
    c, cv_arg, grp = _fold_labels(s, c, frame, o.id_column)
    est, X = _model_and_inputs(s, model, o)
    label = _LABELS[model]
    with s.step(f"Cross-validating {label}", counted="folds", library_hook=False) as update:
        res = cross_validate(
            est,
            X,
            y,
            cv=cv_arg,
            repeats=c.repeats,
            refit_variances=c.refit,
            n_jobs=c.jobs,
            seed=c.seed,
            groups=grp,
            data=data,
            progress=update,
            scheduler=c.scheduler or None,
        )
    _write_cv_outputs(s, label, o, c, res, y)
    s.done()


def _record_settings(s: Session, model: str, o: GeneticOptions, c: CVOptions) -> None:
    """The run's model and CV options, as summary.json records them."""
    s.settings.update(
        {
            "model": model,
            "trait": o.trait,
            "fixed": o.fixed,
            "method": o.method,
            "missing": o.missing,
            "folds": c.folds,
            "repeats": c.repeats,
            "groups": c.groups,
            "fold_column": c.fold_column,
            "seed": c.seed,
            "refit_variances": c.refit,
            "jobs": c.jobs,
        }
    )


def _write_cv_outputs(s: Session, label: str, o: GeneticOptions, c: CVOptions, res, y) -> None:
    """Print the result; write cv_predictions.csv, cv_metrics.csv, report.html and summary.json."""
    pred = res.predictions.copy()
    pred.insert(0, "model", label)
    fm = order_metrics(res.fold_metrics.assign(model=label))
    leak = getattr(res, "leakage_note", "") or None  # single-trait CVResult only
    _print_cv(s, label, res, c.repeats)
    if leak:
        s.warn(cli_words(leak))
    with s.step("Writing outputs"):
        s.write_csv(pred, "cv_predictions.csv")
        s.write_csv(fm, "cv_metrics.csv")
        _write_cv_report(s, label, o, c, res, y, pred, fm, leak)
        s.write_summary(
            {
                "cv_settings": res.settings,
                "summary": res.summary.to_dict(orient="index"),
                "genotypes": s.settings.pop("genotypes", None),
                "leakage_note": cli_words(leak) if leak else None,
            }
        )


def _checked_model(model: str, o: GeneticOptions) -> str:
    """--model as gblup, snpblup or pblup; an error when its input options do not fit it."""
    model = model.lower().replace("-", "")
    if model not in ("gblup", "snpblup", "pblup"):
        raise CLIError(f"--model must be gblup, snpblup or pblup, not {model!r}")
    checked_method(o.method)
    if model == "pblup" and (o.genotypes is not None or o.grm is not None):
        raise CLIError("--model pblup takes --pedigree, not --genotypes or --grm")
    if model != "pblup" and o.pedigree is not None:
        raise CLIError(
            f"--model {model} takes --genotypes" + (" or --grm" if model == "gblup" else "") + ", not --pedigree"
        )
    return model


def _fold_labels(s: Session, c: CVOptions, frame: pd.DataFrame, id_column: str):
    """(options with --repeats as used, the ``cv`` argument, group labels or None).

    Leave-one-out and --fold-column give one fold assignment: --repeats becomes 1.
    """
    ids = frame[id_column].astype(str).str.strip().to_numpy(dtype=object)
    cv_arg, grp = c.folds, None
    if c.folds == "loo" and c.repeats != 1:
        s.warn("--leave-one-out has one fold assignment: --repeats set to 1")
        c = replace(c, repeats=1)
    if c.fold_column:
        require_columns(frame, [c.fold_column], option="--fold-column")
        cv_arg = _labels(frame[c.fold_column], ids)  # missing fold = always in training
        if c.repeats != 1:
            s.warn("--fold-column gives fixed folds: --repeats set to 1")
            c = replace(c, repeats=1)
    if c.groups:
        require_columns(frame, [c.groups], option="--groups")
        grp = _labels(frame[c.groups], ids)
    return c, cv_arg, grp


def _model_and_inputs(s: Session, model: str, o: GeneticOptions):
    """The unfitted estimator and what it is cross-validated on (G, genotypes or pedigree)."""
    from ..estimators import GBLUP, SNPBLUP, PedigreeBLUP

    if model == "pblup":
        if o.pedigree is None:
            raise CLIError("--model pblup needs --pedigree FILE")
        X = read_pedigree(s, o)
        return PedigreeBLUP(method=o.method, fixed=o.fixed, missing=o.missing), X
    if model == "gblup" and o.grm is not None:
        if o.genotypes is not None:
            raise CLIError("give --genotypes or --grm, not both")
        X = read_grm(s, o.grm)
    else:
        if o.genotypes is None:
            raise CLIError(f"--model {model} needs --genotypes FILE" + (" (or --grm FILE)" if model == "gblup" else ""))
        geno_report: dict = {}
        X = read_model_genotypes(s, o, geno_report)
        s.settings["genotypes"] = geno_report.get("genotypes")
    if model == "gblup":
        s.settings["grm_method"] = o.grm_method
        return GBLUP(method=o.method, grm=o.grm_method, fixed=o.fixed, missing=o.missing), X
    return SNPBLUP(method=o.method, fixed=o.fixed, missing=o.missing), X


def _print_cv(s: Session, label: str, res, repeats: int) -> None:
    """The CV summary on stdout (unless --quiet)."""
    if s.quiet:
        return
    s.stdout.print(f"{label} cross-validation ({res.settings.get('scheme')}, {repeats} repeat(s)):")
    # mean ± sd over folds, and the metric pooled over all out-of-fold predictions
    # (the headline when folds are tiny, e.g. leave-one-out)
    cols = ["mean", "sd", "n_folds", "pooled"] if "pooled" in res.summary else ["mean", "sd", "n_folds"]
    s.stdout.print(res.summary[cols].to_string(float_format=lambda v: f"{v:.4f}", na_rep="—"))


def _write_cv_report(
    s: Session, label: str, o: GeneticOptions, c: CVOptions, res, y, pred: pd.DataFrame, fm: pd.DataFrame, leak
) -> None:
    """report.html: the settings, the per-fold metrics and the predictions."""
    from ..report.html import Report
    from ..report.sections import add_cv

    trait = o.trait
    rep = Report(f"Cross-validation: {label}, {trait}", f"{Path(o.phenotypes).name} — {res.settings.get('scheme')}")
    n_obs = int(y.notna().sum())
    kv = {
        "model": label,
        "trait": trait,
        "fixed effects": o.fixed or "intercept",
        "method": o.method.upper(),
        "folds": f"{res.settings.get('scheme')}, {c.repeats} repeat(s), seed {c.seed}"
        + (f", groups from column {c.groups}" if c.groups else ""),
        "variances": "re-estimated by REML in every fold"
        if c.refit
        else "held at the full-data REML estimates (--fixed-variances)",
        "records": f"{n_obs:,} with a value of {trait}" + _scored_note(pred, n_obs),
    }
    # what the folds left out or could not measure, counted (also in summary.json's warnings)
    said = " ".join(cli_words(n) + "." for n in res.settings.get("notes", []))
    note = " ".join(x for x in (cli_words(leak) if leak else "", said) if x)
    add_cv(rep, pred, fm, cv_summary_table(fm), note=note, settings=kv)
    rep.write(s.outdir() / "report.html")
    s.outputs.append("report.html")


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
