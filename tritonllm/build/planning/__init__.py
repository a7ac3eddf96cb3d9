"""Planning, before anything expensive runs: model architecture numbers, target GPUs, the memory
plan and its rules, size guidance, and how many pre/postprocessing instances to serve with."""
