"""henderson.reml."""
