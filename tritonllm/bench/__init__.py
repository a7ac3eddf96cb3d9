"""Benchmarks: the served path on the mixed workload (against transformers and CPU peers), the
in-process engine, the ensemble's capacity, prefix reuse, and serving on a busy machine."""
