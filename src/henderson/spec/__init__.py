"""henderson.spec."""
