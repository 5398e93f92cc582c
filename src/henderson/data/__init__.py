"""Data containers: Pedigree, Genotypes."""
