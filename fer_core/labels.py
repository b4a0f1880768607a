"""The one canonical class order of the project, and how every input format maps onto it.

The canonical order is the order of the original Kaggle CSV's numeric labels, so a CSV label is
already a class index. The Kaggle folder archive names its class folders alphabetically, which is a
different order: always go through `folder_to_index`, never through `sorted(os.listdir(...))`.
"""

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASSES)
EMOJI: dict[str, str] = {
    "angry": "😠",
    "disgust": "🤢",
    "fear": "😨",
    "happy": "😄",
    "sad": "😢",
    "surprise": "😲",
    "neutral": "😐",
}

# Folder names seen in the wild for the archive layout, lowercased.
_FOLDER_ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "neutrality": "neutral",
}

# FER+ vote columns (fer2013new.csv) that correspond to our classes; contempt, unknown and NF do not.
FERPLUS_COLUMNS: dict[str, str] = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprise",
    "neutral": "neutral",
}


def csv_label_to_index(label: int) -> int:
    """Map a numeric label of fer2013.csv to a class index (identity, but validated)."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"unknown FER2013 label {label}: expected 0..{NUM_CLASSES - 1}")
    return label


def folder_to_index(name: str) -> int | None:
    """Map an archive class-folder name (any case, common aliases) to a class index, or None."""
    key = name.strip().lower()
    key = _FOLDER_ALIASES.get(key, key)
    return CLASSES.index(key) if key in CLASSES else None
