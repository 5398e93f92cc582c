"""Relationship matrices: pedigree (A, A⁻¹, inbreeding) and genomic (G)."""

from .container import Relationship, as_relationship

__all__ = ["Relationship", "as_relationship"]
