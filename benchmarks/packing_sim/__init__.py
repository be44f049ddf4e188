"""Packing benchmark for MIG sharing schemes (see benchmarks/packing.py and docs/benchmarks.md)."""
