"""Benchmarks: the mixed workload of issue 2 and the in-process engine benchmark."""
