"""Quantization: the modes table, ModelOpt's configs for each, the quantize-and-export stage, and
each mode's accuracy measured on CPU."""
