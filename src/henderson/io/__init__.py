"""henderson.io."""
