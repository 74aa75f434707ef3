"""Benchmarks that print ratios side by side (see bench/README.md). Never part of pass/fail tests."""
