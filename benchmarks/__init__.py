"""Benchmarks, run on purpose (never by the test suite); each prints its figures."""
