"""The steps the genetic commands share (gblup, snpblup, pblup, cv): their options as one
record, and reading the phenotypes, genotypes, relationship matrix or pedigree.

Each command is then "read inputs, fit, write outputs" over these steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CLIError
from ._inputs import read_genotypes_file, read_pedigree_file, read_phenotypes, read_relationship_file

if TYPE_CHECKING:
    import pandas as pd

    from ._common import Session


def input_options(
    na_values: str | None = None,
    decimal: str = ".",
    missing_parent: str | None = None,
    birth_year: str | None = None,
    maf: float | None = None,
    call_rate: float | None = None,
    repeated_records: bool = False,
) -> dict:
    """The reader options of the command line, as one dict (:attr:`GeneticOptions.inputs`)."""
    return {
        "na_values": codes(na_values),
        "decimal": decimal,
        "repeated_records": repeated_records,
        "missing_parent": None if missing_parent is None else codes(missing_parent),
        "birth_year": birth_year,
        "maf": maf,
        "call_rate": call_rate,
    }


def codes(text: str | None) -> list[str]:
    """Comma-separated codes (``--na-values``, ``--missing-parent``) as a list, blanks dropped."""
    return [] if text is None else [c.strip() for c in text.split(",") if c.strip()]


@dataclass(frozen=True)
class GeneticOptions:
    """What a single-trait genetic model is fitted from: the options of gblup, snpblup,
    pblup and cv that name the inputs and the model (``None`` = not given)."""

    phenotypes: Path
    trait: str
    id_column: str = "id"
    fixed: str | None = None
    method: str = "reml"
    drop_unknown: bool = False
    genotypes: Path | None = None
    pedigree: Path | None = None
    grm: Path | None = None
    grm_method: str = "vanraden1"
    ped_columns: str = "id,sire,dam"
    coding: str | None = None
    selfing: bool = False
    #: reader options, from :func:`input_options`
    inputs: dict = field(default_factory=input_options)

    @property
    def missing(self) -> str:
        """The models' ``missing`` argument: drop phenotyped ids without genotypes/pedigree, or stop."""
        return "drop" if self.drop_unknown else "error"


def checked_method(method: str) -> str:
    """``--method`` in lower case; an error unless reml or ml."""
    method = method.lower()
    if method not in ("reml", "ml"):
        raise CLIError(f"--method must be reml or ml, not {method!r}")
    return method


def check_fixed(frame: pd.DataFrame, fixed: str | None) -> None:
    """--fixed names columns of the phenotype file: an error lists the file's columns."""
    if fixed:
        from ..spec.formula import formula_variables
        from ._inputs import require_columns

        require_columns(frame, formula_variables(fixed), option="--fixed")


def ped_cols(spec: str) -> tuple[str, str, str]:
    """``--ped-columns id,sire,dam`` as three names."""
    cols = [c.strip() for c in spec.split(",")]
    if len(cols) != 3 or not all(cols):
        raise CLIError(f"--ped-columns needs three names id,sire,dam, got {spec!r}")
    return cols[0], cols[1], cols[2]


def read_trait(s: Session, o: GeneticOptions):
    """Read the phenotype file: (y by id, the fixed-effect data by id, the records frame)."""
    opts = o.inputs
    with s.step("Reading phenotypes"):
        y, data, frame = read_phenotypes(
            o.phenotypes,
            o.trait,
            o.id_column,
            o.fixed,
            na_values=opts["na_values"],
            decimal=opts["decimal"],
            one_record_per_id=not opts["repeated_records"],
        )
        s.add_input("phenotypes", o.phenotypes)
        check_fixed(frame, o.fixed)
    return y, data, frame


def read_model_genotypes(s: Session, o: GeneticOptions, extra: dict):
    """Read ``--genotypes`` and prepare them for a model (:func:`model_genotypes`)."""
    with s.step("Reading genotypes"):
        geno = read_genotypes_file(o.genotypes, o.coding)
        s.add_input("genotypes", o.genotypes)
    return model_genotypes(s, geno, o.inputs, extra)


def model_genotypes(s: Session, geno, opts: dict, extra: dict):
    """Missing calls counted, no-call individuals dropped, --maf/--call-rate applied; the
    report goes to ``extra["genotypes"]`` (model.json and summary.json)."""
    from ._inputs import prepare_genotypes

    geno, report, notes = prepare_genotypes(geno, maf=opts.get("maf"), call_rate=opts.get("call_rate"))
    for note in notes:
        s.warn(note)
    extra["genotypes"] = report
    s.settings.update({"maf": opts.get("maf"), "call_rate": opts.get("call_rate")})
    return geno


def read_grm(s: Session, grm: Path) -> Any:
    """Read ``--grm`` (a relationship matrix G)."""
    with s.step("Reading the relationship matrix"):
        G = read_relationship_file(grm, kind="G")
        s.add_input("grm", grm)
    return G


def read_pedigree(s: Session, o: GeneticOptions) -> Any:
    """Read ``--pedigree`` with the reader options; its notes become warnings."""
    with s.step("Reading pedigree"):
        ped, notes = read_pedigree_file(
            o.pedigree,
            *ped_cols(o.ped_columns),
            selfing=o.selfing,
            missing=o.inputs["missing_parent"],
            birth_year=o.inputs["birth_year"],
        )
        s.add_input("pedigree", o.pedigree)  # once, with or without reader notes
    for note in notes:
        s.warn(note)
    return ped
