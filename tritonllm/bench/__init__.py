"""Benchmarks: the served path on the mixed workload (against transformers and CPU peers), the
in-process engine, the ensemble's capacity, prefix reuse, and serving on a busy machine
(``tritonllm bench ...``). ``ab/`` holds the A/B scripts that compare two builds of the engine
or its kernels (run as files: they import tritonllm from the checkout they are given)."""
