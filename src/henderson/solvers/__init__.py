"""henderson.solvers."""
