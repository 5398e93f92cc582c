"""henderson.cv."""
