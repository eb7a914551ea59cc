"""Benchmarks against peers (not part of the test suite); see bench/README.md."""
