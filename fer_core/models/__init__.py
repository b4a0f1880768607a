"""Models: the architectures by name (`networks`), self-describing checkpoints
(`checkpoint`: weights, model config, labels, metrics and calibration in one file) and int8 CPU
inference built from a checkpoint's record (`quantize`)."""
