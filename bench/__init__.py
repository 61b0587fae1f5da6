"""Benchmarks of echomask (SPEC §10): `python -m bench.run --help` (from the repository root) or `make bench`;
see bench/README.md."""
