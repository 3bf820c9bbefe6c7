"""Benchmarks: each prints its figures and writes JSON with the machine it ran on to benchmarks/results/."""
