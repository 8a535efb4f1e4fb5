"""Benchmarks and load tests a person runs from the repository root: `.venv/bin/python -m scripts.NAME`."""
