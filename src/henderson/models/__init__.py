"""Genetic evaluation models: pedigree BLUP, GBLUP and SNP-BLUP (functional core)."""

from .gblup import fit_gblup
from .pblup import fit_pblup
from .snpblup import SNPBLUPFit, fit_snpblup, predict_from_snp_effects, snp_effects_from_gebv

__all__ = ["fit_gblup", "fit_pblup", "fit_snpblup", "SNPBLUPFit", "predict_from_snp_effects", "snp_effects_from_gebv"]
