"""Throughput and scale measurements; results are recorded in docs/benchmarks.md."""
