"""Checkpoints, the merge engine, objectives, the Ray worker pool and the built-in suites."""
