"""Benchmarks: ``python -m benchmarks.<name>`` prints side-by-side ratio tables against peers."""
