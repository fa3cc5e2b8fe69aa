"""Benchmarks and the real-process service stack they (and the fault tests) run against."""
