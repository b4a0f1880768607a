"""Readers that never import torch: a checkpoint's metadata (`checkpoint_info`) and a run folder's
record (`run_records`). The app's Home page and sidebar use them, so a cold server shows models
and runs without waiting about 2 s for torch; writing runs and loading models is elsewhere
(`training.runs`, `models.checkpoint`)."""
