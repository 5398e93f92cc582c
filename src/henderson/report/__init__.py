"""henderson.report."""
