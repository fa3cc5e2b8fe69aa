"""Helpers the tests and the benchmarks share: health probes, waiting, the services as real processes, load."""
