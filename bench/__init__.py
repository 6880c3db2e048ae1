"""Benchmarks and the soak run; a package so tests can reuse ``bench.soak``."""
