"""Loaders for the bundled data sets."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd


def data_path(*parts: str) -> Path:
    """Path of a bundled data file, e.g. ``data_path("wheat", "wheat_Y.csv")``."""
    return Path(str(resources.files("henderson.datasets").joinpath("data", *parts)))


def load_potato() -> pd.DataFrame:
    """Potato yield trial: 41 clones in 3 environments (sommer's ``DT_example``).

    Returns
    -------
    DataFrame, 185 rows: ``Name`` (clone id), ``Env``, ``Loc``, ``Year``, ``Block``,
    ``Yield``, ``Weight``.

    Notes
    -----
    Source: R package sommer 4.3.7, ``data/DT_example.RData``. Publication:
    Covarrubias-Pazaran G (2016) Genome-assisted prediction of quantitative traits
    using the R package sommer. PLoS ONE 11(6): e0156744. Licence: GPL (>= 2), as
    distributed with sommer. The classic model is ``Yield ~ Env + (1|Name)``.
    """
    return pd.read_csv(data_path("potato", "DT_example.csv"), dtype={"Name": str, "Env": str, "Block": str})


@dataclass(frozen=True)
class WheatData:
    """The CIMMYT wheat data: phenotypes, markers, pedigree relationship, folds.

    Attributes
    ----------
    phenotypes : DataFrame indexed by line id, columns ``env1, env2, env4, env5``.
    markers : DataFrame indexed by line id, 1,279 DArT markers coded 0/1.
    A : DataFrame, 599 x 599 pedigree relationship matrix indexed by line id.
    folds : Series indexed by line id, the 10 given cross-validation folds (1-10).
    """

    phenotypes: pd.DataFrame
    markers: pd.DataFrame
    A: pd.DataFrame
    folds: pd.Series


def load_wheat() -> WheatData:
    """599 CIMMYT wheat lines with yields in 4 environments, 1,279 markers, pedigree A.

    Notes
    -----
    Source: R package BGLR 1.1.5, ``data/wheat.RData`` (``wheat.Y``, ``wheat.X``,
    ``wheat.A``, ``wheat.sets``). Origin: CIMMYT Global Wheat Program; Crossa et al.
    (2010) Genetics 186:713-724; Pérez & de los Campos (2014) Genetics 198:483-495.
    Licence: GPL-3, as distributed with BGLR. Markers are inbred-line DArT
    presence/absence (0/1); the references code them M = 2X - 1.
    """
    y = pd.read_csv(data_path("wheat", "wheat_Y.csv"), dtype={"id": str}).set_index("id")
    x = pd.read_csv(data_path("wheat", "wheat_X.csv.gz"), dtype={"id": str}).set_index("id")
    a = pd.read_csv(data_path("wheat", "wheat_A.csv.gz"), dtype={"id": str}).set_index("id")
    a.columns = a.columns.astype(str)
    sets = pd.read_csv(data_path("wheat", "wheat_sets.csv"), dtype={"id": str}).set_index("id")["set"]
    return WheatData(phenotypes=y, markers=x.astype("int8"), A=a, folds=sets)


@dataclass(frozen=True)
class GryphonData:
    """The gryphon animal-model example: records and pedigree.

    Attributes
    ----------
    records : DataFrame with ``ANIMAL, MOTHER, BYEAR, SEX, BWT, TARSUS`` (ids as str).
    pedigree : DataFrame with ``id, sire, dam`` (unknown parents missing).
    """

    records: pd.DataFrame
    pedigree: pd.DataFrame


def load_gryphon() -> GryphonData:
    """Gryphon birth weights and pedigree (1,084 records, 1,309 animals).

    Notes
    -----
    Source: R package sommer 4.3.7, ``data/DT_gryphon.RData``. Publication: Wilson AJ
    et al. (2010) An ecologist's guide to the animal model. J. Anim. Ecol. 79:13-26
    (simulated data). Licence: GPL (>= 2), as distributed with sommer.
    """
    ids = {"ANIMAL": str, "MOTHER": str, "BYEAR": str, "SEX": str}
    rec = pd.read_csv(data_path("gryphon", "DT_gryphon.csv"), dtype=ids)
    ped = pd.read_csv(data_path("gryphon", "P_gryphon.csv"), dtype=str)
    return GryphonData(records=rec, pedigree=ped)


def load_lme4(name: str) -> pd.DataFrame:
    """One of lme4's classic data sets: Dyestuff, Dyestuff2, Penicillin, Pastes, cake, sleepstudy.

    Notes
    -----
    Source: R package lme4 1.1-31; licence GPL (>= 2). See the README beside the files
    for each data set's origin.
    """
    path = data_path("lme4", f"{name}.csv")
    if not path.exists():
        raise FileNotFoundError(f"no bundled lme4 data set {name!r}")
    return pd.read_csv(path)


@dataclass(frozen=True)
class CPData:
    """sommer's cpdata: 363 F1 fruit plants, four traits and 2,889 markers.

    Attributes
    ----------
    phenotypes : DataFrame indexed by id: ``Row, Col, Year, color, Yield, FruitAver,
        Firmness, Rowf, Colf``.
    markers : DataFrame indexed by id, 2,889 markers on the 0/1/2 scale (sommer's
        −1/0/1 coding plus 1; 55 imputed cells are 0.5 or 1.5).
    """

    phenotypes: pd.DataFrame
    markers: pd.DataFrame


def load_cpdata() -> CPData:
    """The cpdata multi-trait example (sommer's ``DT_cpdata`` and ``GT_cpdata``).

    Notes
    -----
    Source: R package sommer 4.3.7, ``data/DT_cpdata.RData``; simulated for fruit
    breeding applications (Covarrubias-Pazaran 2016, PLoS ONE 11:e0156744). Licence:
    GPL (>= 2), as distributed with sommer.
    """
    ph = pd.read_csv(data_path("cpdata", "DT_cpdata.csv"), dtype={"id": str}).set_index("id")
    gt = pd.read_csv(data_path("cpdata", "GT_cpdata.csv.gz"), dtype={"id": str}).set_index("id")
    return CPData(phenotypes=ph, markers=gt + 1.0)
