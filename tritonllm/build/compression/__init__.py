"""The compress stage and its parts: structured pruning, distillation (data, training, the
curve), 2:4 sparsity, and the report of what each lever costs and buys."""
