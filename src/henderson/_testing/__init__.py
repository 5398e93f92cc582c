"""Seeded simulators of pedigrees, genotypes and phenotypes for tests and benchmarks."""
