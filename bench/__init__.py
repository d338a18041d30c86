"""Benchmarks: stdb side by side with baselines in the same run; results as JSON in bench/results/."""
