"""tokbot's benchmarks: `python -m bench` (full, by hand) or `python -m bench --quick` (CI)."""
