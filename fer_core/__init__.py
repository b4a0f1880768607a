"""fer_core: facial emotion recognition on FER2013 (data, models, training, evaluation, prediction).

The library never imports streamlit, so the same code serves the app, the CLI, tests and a GPU box.
"""

from fer_core.errors import CheckpointError, DataError, FerError, ImageError
from fer_core.labels import CLASSES, NUM_CLASSES

__all__ = ["CLASSES", "NUM_CLASSES", "CheckpointError", "DataError", "FerError", "ImageError"]
__version__ = "0.1.0"
