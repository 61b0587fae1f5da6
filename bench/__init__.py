"""Benchmarks of echomask (SPEC §10): `python bench/run.py --help` or `make bench`; see bench/README.md."""
