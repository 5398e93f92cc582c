"""Cross-validation schemes: every split is a pair of id sets (train, test).

A scheme turns the phenotyped ids into folds. All schemes work on ids, never on
positions, and check their input loudly (a fold without training phenotypes, a group
holding everyone, fewer individuals than folds, fold ids absent from the data).

Schemes
-------
``KFold(k)``            random k folds (seeded); ``repeats`` re-draws them.
``LeaveOneOut()``       n folds of one individual.
``GroupFolds(groups)``  leave-one-group-out (``k=None``) or groups dealt to k folds.
``ForwardInTime(order)`` train on older levels of an ordered column, test the youngest
                        (``steps`` > 1: each of the last ``steps`` levels in turn,
                        trained only on strictly older ones).
``GivenFolds(folds)``   user folds, a Series by id (e.g. ``load_wheat().folds``).
any scikit-learn splitter (``split(X, y, groups)``) is wrapped by ``SklearnFolds``.

:func:`resolve_scheme` maps the ``cv=`` argument of ``cross_validate`` to a scheme.

Repeated records per id (multi-environment trials: one phenotype per line and
environment) are split *by record*: the grouped schemes (``GroupFolds``,
``GivenFolds``, ``ForwardInTime``) then take labels with one entry per record (a
Series with the same ids in the same order as y, or a column of a record-level
``data=``). Leave-environment-out thus trains on the records of the other
environments (lines may be shared) and predicts the held-out environment's records.
Random k-fold, leave-one-out and scikit-learn splitters refuse repeated records: they
would scatter one line's records between training and validation without saying so.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, HendersonWarning, format_ids


@dataclass(frozen=True)
class Split:
    """One fold of one repeat.

    ``train`` and ``test`` are arrays of ids (str; an id repeats when y has several
    records of it); ``train_pos`` and ``test_pos`` the positions of those records in
    the y given to :func:`make_splits`.
    """

    repeat: int
    fold: str
    train: np.ndarray
    test: np.ndarray
    train_pos: np.ndarray
    test_pos: np.ndarray

    def progress_info(self, path: str) -> dict:
        """What a progress callback is told of this fold (``path``: "fast" or "refit")."""
        return {
            "repeat": self.repeat,
            "fold": self.fold,
            "n_train": len(self.train_pos),
            "n_test": len(self.test_pos),
            "path": path,
        }


def _as_series(s, ids, what: str, data=None) -> pd.Series:
    """A Series by id from a Series or a column name of ``data``."""
    if isinstance(s, str):
        if data is None or s not in data.columns:
            raise DataError(f"{what}={s!r} names a column, but data= has no such column")
        s = data[s]
        s = s[pd.Index(s.index.astype(str)).isin(ids)]  # a column of data: rows beyond y are fine
    if not isinstance(s, pd.Series):
        raise DataError(f"{what} must be a pandas Series indexed by id or a column name of data")
    s = s.copy()
    s.index = pd.Index(s.index.astype(str))
    if s.index.has_duplicates:
        raise DataError(f"{what} has duplicated ids: " + format_ids(s.index[s.index.duplicated()].unique()))
    return s


def _check_covered(s: pd.Series, ids: np.ndarray, what: str, all_ids=None) -> pd.Series:
    """``s`` restricted to the phenotyped ``ids``; errors for ids absent from the data
    (not in ``all_ids``, the index of y including NaN phenotypes) and for phenotyped ids
    missing from ``s``."""
    extra = s.index[~s.index.isin(ids if all_ids is None else all_ids)]
    if len(extra):
        raise DataError(f"{len(extra)} id(s) in the {what} are absent from the data (y): " + format_ids(extra))
    absent = pd.Index(ids)[~pd.Index(ids).isin(s.index)]
    if len(absent):
        raise DataError(
            f"{len(absent)} phenotyped id(s) have no entry in the {what}: "
            + format_ids(absent)
            + " (give them NaN to keep them always in training)"
        )
    return s.loc[ids]


class Scheme:
    """Base: ``folds(ids, y, repeat, seed, data)`` → list of (label, train, test)."""

    random = False
    name = "scheme"

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class KFold(Scheme):
    """Random k folds of (as) equal size (sizes differ by at most one), seeded."""

    k: int = 5
    random = True

    @property
    def name(self):
        return f"{self.k}-fold"

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):
        n = len(ids)
        if self.k < 2:
            raise DataError(f"k-fold needs k >= 2, got {self.k}")
        if n < self.k:
            raise DataError(f"{n} phenotyped individuals are fewer than the {self.k} folds")
        rng = np.random.default_rng([int(seed), int(repeat)])
        lab = rng.permutation(np.arange(n) % self.k)
        order = np.sort(ids)  # independent of the input order
        return [(str(f + 1), order[lab != f], order[lab == f]) for f in range(self.k)]


@dataclass(frozen=True)
class LeaveOneOut(Scheme):
    name = "leave-one-out"

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):
        if len(ids) < 2:
            raise DataError("leave-one-out needs at least 2 phenotyped individuals")
        order = np.sort(ids)
        return [(i, np.delete(order, j), order[j : j + 1]) for j, i in enumerate(order)]


@dataclass(frozen=True, eq=False)
class GroupFolds(Scheme):
    """Leave-group-out: ``groups`` a Series by id or a column of ``data``.

    ``k=None``: one fold per group (leave-one-group-out); otherwise the groups are
    dealt at random (seeded) to ``k`` folds. Ids with a missing group are always
    in training.
    """

    groups: Any = None
    k: int | None = None

    @property
    def random(self):
        return self.k is not None

    @property
    def name(self):
        return "leave-one-group-out" if self.k is None else f"group {self.k}-fold"

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):
        g = _check_covered(_as_series(self.groups, ids, "groups", data), ids, "groups", all_ids)
        levels = pd.unique(g.dropna())
        if len(levels) == 1 and g.notna().all():
            raise DataError(
                f"group {levels[0]!r} holds every phenotyped individual: nothing left to "
                "train on (leave-group-out needs at least 2 groups)"
            )
        if len(levels) < 2:
            raise DataError(f"leave-group-out needs at least 2 groups, found {len(levels)}")
        if self.k is None:
            lab = g.astype(object)
            labels = sorted(levels, key=str)
        else:
            if len(levels) < self.k:
                raise DataError(f"{len(levels)} groups are fewer than the {self.k} folds")
            rng = np.random.default_rng([int(seed), int(repeat)])
            srt = sorted(levels, key=str)
            deal = dict(zip(srt, rng.permutation(np.arange(len(srt)) % self.k) + 1))
            lab = g.map(deal)
            labels = list(range(1, self.k + 1))
        out = []
        for lv in labels:
            test = g.index[(lab == lv).to_numpy()].to_numpy()
            train = g.index[~(lab == lv).to_numpy()].to_numpy()
            if len(train) == 0:
                raise DataError(f"group {lv!r} holds every phenotyped individual: nothing left to train on")
            out.append((str(lv), train, test))
        return out


@dataclass(frozen=True, eq=False)
class ForwardInTime(Scheme):
    """Train on older levels of an ordered column, predict the youngest.

    ``order`` is a Series by id (or a column of ``data``) of generations, years,
    birth dates: anything sortable. With ``steps=s`` each of the ``s`` youngest levels
    is a fold, trained only on strictly older individuals (younger ones are masked).
    """

    order: Any = None
    steps: int = 1

    name = "forward-in-time"

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):
        o = _check_covered(_as_series(self.order, ids, "order", data), ids, "order", all_ids).dropna()
        levels = np.sort(pd.unique(o))
        if len(levels) < 2:
            raise DataError(f"forward-in-time needs at least 2 levels of the ordered column, found {len(levels)}")
        if not 1 <= self.steps < len(levels):
            raise DataError(
                f"steps={self.steps} must be between 1 and {len(levels) - 1} (the column has {len(levels)} levels)"
            )
        out = []
        for lv in levels[-self.steps :]:
            test = o.index[(o == lv).to_numpy()].to_numpy()
            train = o.index[(o < lv).to_numpy()].to_numpy()
            out.append((str(lv), train, test))
        return out


@dataclass(frozen=True, eq=False)
class GivenFolds(Scheme):
    """User folds: a Series by id → fold label (NaN: always in training)."""

    folds_: Any = None
    name = "given folds"

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):
        f = _check_covered(_as_series(self.folds_, ids, "fold Series", data), ids, "fold Series", all_ids)
        labels = sorted(pd.unique(f.dropna()), key=lambda v: (str(type(v)), v))
        if len(labels) == 1 and f.notna().all():
            raise DataError(f"fold {str(labels[0])!r} holds every phenotyped individual: it has 0 training phenotypes")
        if len(labels) < 2:
            raise DataError(
                f"the fold Series has {len(labels)} fold label(s) among the phenotyped ids; at least 2 are needed"
            )
        out = []
        for lv in labels:
            m = (f == lv).to_numpy()
            out.append((str(lv), f.index[~m].to_numpy(), f.index[m].to_numpy()))
        return out


@dataclass(frozen=True, eq=False)
class SklearnFolds(Scheme):
    """Any scikit-learn splitter.

    Seeded splitters (``random_state`` and shuffling): with ``repeats=1`` a
    ``random_state`` the user set is kept; otherwise (``None``, or ``repeats > 1``,
    which needs different folds per repeat) it is drawn from ``(seed, repeat)``, with
    a warning when that overrides the user's value. Errors the splitter raises are
    re-raised as :class:`DataError` naming the splitter and the cause.
    """

    splitter: Any = None
    groups: Any = None
    n_repeats: int = 1

    @property
    def random(self):
        # seeded splitters (ShuffleSplit, KFold(shuffle=True), ...)
        return hasattr(self.splitter, "random_state") and bool(getattr(self.splitter, "shuffle", True))

    @property
    def name(self):
        return type(self.splitter).__name__

    def describe(self) -> str:
        return repr(self.splitter)

    def folds(self, ids, y, repeat, seed, data=None, all_ids=None):
        sp = self.splitter
        user_state = getattr(sp, "random_state", None)
        if self.random and (self.n_repeats > 1 or user_state is None):
            sp = copy.deepcopy(sp)  # splitters are plain objects: set their seed per repeat
            sp.random_state = int(np.random.default_rng([int(seed), int(repeat)]).integers(2**31 - 1))
        order = np.sort(ids)
        grp = None
        if self.groups is not None:
            grp = (
                _check_covered(_as_series(self.groups, ids, "groups", data), ids, "groups", all_ids)
                .loc[order]
                .to_numpy()
            )
        yy = y.loc[order].to_numpy()
        try:
            return [
                (str(j + 1), order[tr], order[te]) for j, (tr, te) in enumerate(sp.split(order.reshape(-1, 1), yy, grp))
            ]
        except (ValueError, TypeError) as exc:  # scikit-learn's own input checks
            hint = " (pass groups= to cross_validate)" if grp is None and "group" in str(exc).lower() else ""
            raise DataError(
                f"the scikit-learn splitter {self.describe()} cannot split the {len(order)} "
                f"phenotyped ids{'' if grp is None else f' in {len(pd.unique(grp))} group(s)'}: "
                f"{exc}{hint}"
            ) from exc


def resolve_scheme(cv, groups=None) -> Scheme:
    """Map ``cv=`` to a scheme.

    int k → :class:`KFold` (or :class:`GroupFolds` with ``k`` when ``groups`` is given);
    ``"loo"`` → :class:`LeaveOneOut`; ``"logo"``/``"group"`` → leave-one-group-out on
    ``groups``; a Series → :class:`GivenFolds`; a :class:`Scheme`; or any object with
    ``split`` (scikit-learn splitter).
    """
    if isinstance(cv, Scheme):
        return cv
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        return KFold(int(cv)) if groups is None else GroupFolds(groups, int(cv))
    if isinstance(cv, str):
        if cv.lower() in ("loo", "leave-one-out"):
            return LeaveOneOut()
        if cv.lower() in ("logo", "group", "leave-one-group-out"):
            if groups is None:
                raise DataError(f"cv={cv!r} needs groups= (a Series by id or a column of data)")
            return GroupFolds(groups, None)
        raise DataError(f"unknown cv={cv!r}: use an int, 'loo', 'logo', a fold Series or a splitter")
    if isinstance(cv, pd.Series):
        return GivenFolds(cv)
    if hasattr(cv, "split"):
        return SklearnFolds(cv, groups)
    raise DataError(
        f"cv must be an int, 'loo', 'logo', a Series of folds by id, a henderson scheme "
        f"or a scikit-learn splitter, not {type(cv).__name__}"
    )


def _by_record(labels, index: pd.Index, keys: np.ndarray, data, what: str) -> pd.Series:
    """Record-aligned labels (one per record of y, same ids in the same order) re-keyed
    by record position."""
    if isinstance(labels, str):
        if data is None or labels not in data.columns:
            raise DataError(f"{what}={labels!r} names a column, but data= has no such column")
        labels = data[labels]
    if not isinstance(labels, pd.Series):
        raise DataError(f"{what} must be a pandas Series or a column name of data")
    got = pd.Index(labels.index.astype(str))
    if len(got) != len(index) or not (got == index).all():
        raise DataError(
            f"y has repeated records per id, so the {what} must have one entry per record: "
            f"the same ids in the same order as y (checked row by row); got {len(got)} "
            f"entries for {len(index)} records"
        )
    return pd.Series(labels.to_numpy(), index=keys)


def _record_scheme(scheme: Scheme, index: pd.Index, keys: np.ndarray, data) -> Scheme:
    """The scheme over record keys (positions as str) instead of ids."""
    if isinstance(scheme, GroupFolds):
        return dataclasses.replace(scheme, groups=_by_record(scheme.groups, index, keys, data, "groups"))
    if isinstance(scheme, GivenFolds):
        return dataclasses.replace(scheme, folds_=_by_record(scheme.folds_, index, keys, data, "fold Series"))
    if isinstance(scheme, ForwardInTime):
        return dataclasses.replace(scheme, order=_by_record(scheme.order, index, keys, data, "order"))
    dup = index[index.duplicated()].unique()
    raise DataError(
        f"y has repeated records for {len(dup)} id(s) ({format_ids(dup, 5)}), and {scheme.describe()!r} "
        "would scatter one line's records between training and validation. Give a grouped scheme with "
        "one label per record: cv='logo' with groups= the environment of each record (leave-environment-"
        "out), groups=pd.Series(y.index, index=y.index) to leave whole lines out, or a fold Series "
        "aligned with y; or average the records per line first (y.groupby(level=0).mean())."
    )


def make_splits(scheme: Scheme, y: pd.Series, *, repeats: int = 1, seed: int = 0, data=None) -> list[Split]:
    """All (repeat, fold) splits of the phenotyped records of ``y``, checked.

    With one record per id the schemes split ids. With repeated ids (several records
    per line) the grouped schemes split records (see the module docstring) and the
    ids of a split may be shared between training and test.

    Raises
    ------
    DataError
        ``repeats > 1`` with a deterministic scheme; a fold with no training
        phenotypes or no test individuals; bad scheme input (see the schemes);
        repeated records with a scheme that cannot split by record.
    """
    scheme = _repeated(scheme, repeats, seed)
    yy = y.copy()
    yy.index = pd.Index(yy.index.astype(str))
    by_record = yy.index.has_duplicates
    if by_record:
        keys = np.arange(len(yy)).astype(str).astype(object)
        scheme = _record_scheme(scheme, yy.index, keys, data)
        work, data = pd.Series(yy.to_numpy(), index=keys), None
    else:
        work = yy
    all_ids = work.index.to_numpy(dtype=object)
    work = pd.to_numeric(work, errors="coerce").dropna()
    ids = work.index.to_numpy(dtype=object)
    out = []
    for r in range(repeats):
        for label, train, test in scheme.folds(ids, work, r, seed, data, all_ids):
            _check_fold(label, r, train, test, "records" if by_record else "ids")
            if by_record:
                tr, te = np.asarray(train).astype(int), np.asarray(test).astype(int)
            else:
                tr, te = yy.index.get_indexer(train), yy.index.get_indexer(test)
            out.append(
                Split(r, str(label), yy.index.to_numpy(dtype=object)[tr], yy.index.to_numpy(dtype=object)[te], tr, te)
            )
    return out


def _repeated(scheme: Scheme, repeats: int, seed: int) -> Scheme:
    """The scheme set to ``repeats`` repeats; an error for repeats of a deterministic scheme."""
    if repeats < 1:
        raise DataError(f"repeats must be >= 1, got {repeats}")
    if isinstance(scheme, SklearnFolds):
        if repeats > 1 and scheme.random and getattr(scheme.splitter, "random_state", None) is not None:
            warnings.warn(
                f"random_state={scheme.splitter.random_state!r} of {scheme.describe()} is replaced "
                f"by seeds drawn from (seed={seed}, repeat) so that the {repeats} repeats differ; "
                "set repeats=1 to keep it",
                HendersonWarning,
                stacklevel=4,
            )
        scheme = dataclasses.replace(scheme, n_repeats=repeats)
    if repeats > 1 and not scheme.random:
        raise DataError(
            f"repeats={repeats} with the deterministic scheme {scheme.describe()!r} would "
            "repeat identical folds; use repeats=1"
        )
    return scheme


def _check_fold(label, r: int, train, test, what: str) -> None:
    """A fold has test individuals, at least two training phenotypes, and no overlap."""
    if len(test) == 0:
        raise DataError(f"fold {label!r} (repeat {r}) has no test individuals")
    if len(train) < 2:
        raise DataError(f"fold {label!r} (repeat {r}) leaves {len(train)} training phenotype(s): nothing to fit")
    if np.intersect1d(train, test).size:
        raise DataError(f"fold {label!r}: {what} both in training and test: " + format_ids(np.intersect1d(train, test)))


def label_notes(scheme: Scheme, y: pd.Series, data=None) -> list[str]:
    """Counts of what given fold or group labels leave out, each also a DataWarning.

    * phenotyped ids whose fold or group label is missing (always in training, never
      validated);
    * fold labels (of ``GivenFolds``) carried only by ids without a phenotype: those
      folds are not validated at all.

    Anything malformed is left to :func:`make_splits`, which raises.
    """
    from ..errors import DataWarning

    if isinstance(scheme, GivenFolds):
        raw, what = scheme.folds_, "fold"
    elif isinstance(scheme, GroupFolds):
        raw, what = scheme.groups, "group"
    else:
        return []
    ids = pd.Index(y.index.astype(str))
    if ids.has_duplicates:
        return []
    try:
        lab = _as_series(raw, ids.to_numpy(dtype=object), what, data)
    except DataError:
        return []
    lab = lab[lab.index.isin(ids)]
    phen = ids[y.notna().to_numpy()]
    notes = []
    no_label = phen[~phen.isin(lab.dropna().index)]
    if len(no_label):
        notes.append(
            f"{len(no_label)} phenotyped id(s) have no {what} label: always in training, never "
            f"validated: {format_ids(no_label)}"
        )
    if what == "fold":
        with_y = set(lab[lab.index.isin(phen)].dropna().astype(str))
        empty = sorted({str(v) for v in lab.dropna()} - with_y)
        if empty:
            notes.append(
                f"{len(empty)} fold(s) have no phenotyped individual and are not validated: {format_ids(empty)}"
            )
    for n in notes:
        warnings.warn(DataWarning(n), stacklevel=3)
    return notes
