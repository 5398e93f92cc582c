"""Cross-validation schemes: by ids, seeded, and loud about bad input."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, ShuffleSplit

from henderson.cv import ForwardInTime, GivenFolds, GroupFolds, KFold, LeaveOneOut, make_splits, resolve_scheme
from henderson.errors import DataError

IDS = [f"i{j}" for j in range(23)]


@pytest.fixture
def y():
    return pd.Series(np.arange(23.0), index=IDS, name="y")


def test_kfold_partitions_seeded(y):
    s = make_splits(KFold(5), y, repeats=3, seed=7)
    assert len(s) == 15
    for r in range(3):
        tests = np.concatenate([x.test for x in s if x.repeat == r])
        assert sorted(tests) == sorted(IDS)  # each id validated once per repeat
        assert {len(x.test) for x in s if x.repeat == r} == {4, 5}
        for x in s:
            assert set(x.train) | set(x.test) == set(IDS) and not set(x.train) & set(x.test)
    again = make_splits(KFold(5), y, repeats=3, seed=7)
    assert all((a.test == b.test).all() for a, b in zip(s, again))
    other = make_splits(KFold(5), y, repeats=1, seed=8)
    assert any(set(a.test) != set(b.test) for a, b in zip(s[:5], other))
    assert set(s[0].test) != set(s[5].test)  # repeats re-draw the folds
    # input order does not matter, only ids
    shuffled = make_splits(KFold(5), y.sample(frac=1, random_state=1), seed=7)
    assert all(set(a.test) == set(b.test) for a, b in zip(s[:5], shuffled))


def test_missing_phenotypes_never_validated(y):
    y = y.copy()
    y.iloc[:3] = np.nan
    for x in make_splits(KFold(4), y):
        assert not set(x.test) & set(IDS[:3]) and not set(x.train) & set(IDS[:3])


def test_loo(y):
    s = make_splits(resolve_scheme("loo"), y)
    assert len(s) == 23 and all(len(x.test) == 1 and len(x.train) == 22 for x in s)
    with pytest.raises(DataError, match="deterministic"):
        make_splits(LeaveOneOut(), y, repeats=2)


def test_groups(y):
    fam = pd.Series(np.repeat(["A", "B", "C", "D"], [6, 6, 6, 5]), index=IDS)
    s = make_splits(resolve_scheme("logo", groups=fam), y)
    assert [x.fold for x in s] == ["A", "B", "C", "D"]
    assert all(fam[x.test].nunique() == 1 and fam[x.test].iloc[0] not in set(fam[x.train]) for x in s)
    s2 = make_splits(resolve_scheme(2, groups=fam), y, seed=1)
    assert len(s2) == 2 and all(not set(fam[x.test]) & set(fam[x.train]) for x in s2)
    # groups by column name of data
    data = pd.DataFrame({"family": fam})
    assert [x.fold for x in make_splits(GroupFolds("family"), y, data=data)] == ["A", "B", "C", "D"]
    two = pd.Series(np.where(np.arange(23) < 22, "big", "small"), index=IDS)
    with pytest.raises(DataError, match="fold 'big' .*leaves 1 training"):
        make_splits(GroupFolds(two), y)


def test_group_holding_everyone_is_named(y):
    fam = pd.Series(["all"] * 22 + [None], index=IDS)  # missing group: always training
    fam2 = pd.Series(["all"] * 23, index=IDS)
    with pytest.raises(DataError, match="at least 2 groups"):
        make_splits(GroupFolds(fam), y)
    with pytest.raises(DataError, match="group 'all' holds every phenotyped individual"):
        make_splits(GroupFolds(fam2), y)
    # two groups, with the phenotypes only in one: that group holds everyone
    yy = y.copy()
    yy.iloc[12:] = np.nan
    g = pd.Series(np.where(np.arange(23) < 12, "x", "z"), index=IDS)
    with pytest.raises(DataError, match="group 'x' holds every phenotyped individual"):
        make_splits(GroupFolds(g), yy)


def test_forward_in_time(y):
    gen = pd.Series(np.repeat([1, 2, 3, 4], [5, 6, 6, 6]), index=IDS)
    (s,) = make_splits(ForwardInTime(gen), y)
    assert s.fold == "4" and set(gen[s.test]) == {4} and set(gen[s.train]) == {1, 2, 3}
    s = make_splits(ForwardInTime(gen, steps=2), y)
    assert [x.fold for x in s] == ["3", "4"]
    assert set(gen[s[0].train]) == {1, 2}  # the younger generation 4 is not used to predict 3
    with pytest.raises(DataError, match="steps"):
        make_splits(ForwardInTime(gen, steps=4), y)


def test_given_folds(y):
    f = pd.Series(np.arange(23) % 3 + 1, index=IDS)
    s = make_splits(resolve_scheme(f), y)
    assert [x.fold for x in s] == ["1", "2", "3"]
    f2 = f.astype(float)
    f2.iloc[0] = np.nan  # never validated, always trained on
    s = make_splits(GivenFolds(f2), y)
    assert all("i0" in x.train for x in s)
    bad = pd.concat([f, pd.Series([1, 2], index=["ghost1", "ghost2"])])
    with pytest.raises(DataError, match="absent from the data.*ghost1"):
        make_splits(GivenFolds(bad), y)
    with pytest.raises(DataError, match="no entry in the fold Series.*i22"):
        make_splits(GivenFolds(f.iloc[:-1]), y)
    # unphenotyped ids in the fold Series are fine (present in y as NaN)
    yy = y.copy()
    yy.iloc[:2] = np.nan
    assert len(make_splits(GivenFolds(f), yy)) == 3


def test_fold_without_training_phenotypes_is_named(y):
    yy = y.copy()
    f = pd.Series(np.where(np.arange(23) < 10, 1, 2), index=IDS)
    yy[f == 2] = np.nan  # only fold 1 is phenotyped
    with pytest.raises(DataError, match="fold '1' .*0 training"):
        make_splits(GivenFolds(f), yy)


def test_fewer_individuals_than_folds(y):
    with pytest.raises(DataError, match="23 phenotyped individuals are fewer than the 30 folds"):
        make_splits(KFold(30), y)


def test_sklearn_splitters(y):
    s = make_splits(resolve_scheme(ShuffleSplit(n_splits=3, test_size=0.25)), y, repeats=2, seed=3)
    assert len(s) == 6 and all(len(x.test) == 6 for x in s)
    s2 = make_splits(resolve_scheme(ShuffleSplit(n_splits=3, test_size=0.25)), y, repeats=2, seed=3)
    assert all((a.test == b.test).all() for a, b in zip(s, s2))  # seeded through random_state
    fam = pd.Series(np.arange(23) // 4, index=IDS)
    s = make_splits(resolve_scheme(GroupKFold(3), groups=fam), y)
    assert all(not set(fam[x.test]) & set(fam[x.train]) for x in s)
    with pytest.raises(DataError, match="cv must be"):
        resolve_scheme(3.5)


def test_sklearn_errors_are_data_errors_naming_the_splitter(y):
    one = pd.Series("only", index=IDS)
    with pytest.raises(DataError, match=r"GroupKFold\(.*cannot split the 23 phenotyped ids in 1 group"):
        make_splits(resolve_scheme(GroupKFold(2), groups=one), y)
    with pytest.raises(DataError, match="GroupKFold.*groups.*pass groups= to cross_validate"):
        make_splits(resolve_scheme(GroupKFold(2)), y)  # sklearn: "The 'groups' parameter should not be None"
    from sklearn.model_selection import StratifiedKFold

    with pytest.raises(DataError, match="StratifiedKFold"):  # continuous y cannot be stratified
        make_splits(resolve_scheme(StratifiedKFold(3)), y)


def test_sklearn_random_state_kept_for_one_repeat_and_warned_when_replaced(y):
    import warnings

    from sklearn.model_selection import KFold as SkKFold

    from henderson.errors import HendersonWarning

    sk = SkKFold(4, shuffle=True, random_state=11)
    want = [te for _, te in sk.split(np.sort(IDS))]  # scikit-learn's own folds of the sorted ids
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repeats=1: no warning, the user's random_state is respected
        s = make_splits(resolve_scheme(sk), y, seed=999)
    assert [list(x.test) for x in s] == [list(np.sort(IDS)[t]) for t in want]
    assert sk.random_state == 11  # the user's splitter is not modified
    with pytest.warns(HendersonWarning, match="random_state=11 .* replaced"):
        s2 = make_splits(resolve_scheme(sk), y, repeats=2, seed=5)
    assert {tuple(x.test) for x in s2 if x.repeat == 0} != {tuple(x.test) for x in s2 if x.repeat == 1}
    # random_state=None: seeded from (seed, repeat), reproducible, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = make_splits(resolve_scheme(SkKFold(4, shuffle=True)), y, seed=5)
        b = make_splits(resolve_scheme(SkKFold(4, shuffle=True)), y, seed=5)
    assert all((p.test == q.test).all() for p, q in zip(a, b))
