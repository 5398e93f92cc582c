"""henderson.cli."""
