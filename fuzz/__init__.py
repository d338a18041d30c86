"""Fuzzing and crash-torture harness."""
