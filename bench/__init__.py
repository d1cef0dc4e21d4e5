"""Benchmarks: run on demand (`make bench`), each compared with a floor measured in the same run."""
