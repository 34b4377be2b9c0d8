"""One-off studies: frontiers, sweeps, probes, report builders (not user commands)."""
