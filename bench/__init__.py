"""Benchmarks: each module is a runnable script (`python -m bench.<name>`) that prints its
figures next to a baseline measured in the same process. Latest results: docs/benchmarks.md."""
