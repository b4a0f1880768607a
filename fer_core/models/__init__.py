"""Models: the architectures by name (`networks`) and self-describing checkpoints
(`checkpoint`: weights, model config, labels, metrics and calibration in one file)."""
