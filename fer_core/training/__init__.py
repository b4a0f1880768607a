"""Training: the generic `Trainer` and the pieces it composes (losses, optimisers, weight
averaging), its `TrainConfig`, the named recipes, and run folders that resume and record a run.

Import from the modules: `training.config`, `training.trainer`, `training.recipes`,
`training.runs`.
"""
