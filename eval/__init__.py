"""Evaluation scripts: benchmarks (and, later, the leaderboard)."""
