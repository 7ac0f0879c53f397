"""Simulated environments that generate events (bandit, dynamical, fairness)."""
