"""Benchmarks run by `make bench`: each module's main() prints our figures beside a reference."""
