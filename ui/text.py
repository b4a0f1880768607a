"""Words for the pages: Markdown-safe paths and messages, split names, the headline accuracy.

Everything st.error / st.info / st.markdown show is Markdown, so a path or a message from fer_core
("expected train/<class>/*.png") must be escaped, or its asterisks turn into italics.
"""

from __future__ import annotations

import re

import numpy as np

from fer_core.data.fer2013 import SPLITS, FerData

# The names FER2013 itself uses for its splits ("Usage" in the CSV, file-name prefixes).
SPLIT_LABELS = {
    "train": "Training",
    "public_test": "PublicTest",
    "private_test": "PrivateTest",
    "test_unlabelled_split": "Test",
    "test": "PublicTest + PrivateTest",
    "all": "All",
}

# Emphasis, code, links, HTML, LaTeX, strikethrough. An underscore inside a word (state_dict)
# never starts emphasis in CommonMark, so it stays as it is.
_INLINE = re.compile(r"([\\`*\[\]<>$~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_LINE_START = re.compile(r"^(\s*\d*)([#+\-=.)])", re.MULTILINE)  # headings, lists: "1." "- "


def md(text: object) -> str:
    """`text` as Markdown that shows exactly these characters."""
    escaped = _INLINE.sub(r"\\\1", str(text))
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def code(text: object) -> str:
    """`text` as an inline code span (monospace, nothing inside is formatted), even when it
    holds backticks itself."""
    text = str(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def split_label(split: str) -> str:
    return SPLIT_LABELS.get(split, split)


def split_sizes(data: FerData) -> dict[str, int]:
    """Split -> number of faces, for the splits the dataset really holds (no "test" alias)."""
    codes, counts = np.unique(data.splits, return_counts=True)
    return {SPLITS[int(c)]: int(n) for c, n in zip(codes, counts)}


def describe_splits(data: FerData) -> str:
    """ "Training 28,709 · PublicTest 3,589" """
    return " · ".join(f"{split_label(s)} {n:,}" for s, n in split_sizes(data).items())


def tally(counts: dict[str, int]) -> str:
    """{'train': 1236, 'public_test': 26} -> "1,262 (1,236 in Training, 26 in PublicTest)";
    "none" when every count is zero."""
    parts = [f"{n:,} in {split_label(split)}" for split, n in counts.items() if n]
    if not parts:
        return "none"
    return f"{sum(counts.values()):,} ({', '.join(parts)})"


def headline_accuracy(metrics: dict) -> tuple[str, float] | None:
    """(label, accuracy) of the number a model is known by, named after the split it was measured
    on, the same way on Home, in the sidebar and on Train; None if the model stores none."""
    public = metrics.get("public_test") or {}
    if public.get("accuracy") is not None:
        return "PublicTest accuracy", float(public["accuracy"])
    if metrics.get("val_acc") is None:
        return None
    split = str(metrics.get("val_split") or "")
    if split in SPLITS:
        return f"{split_label(split)} accuracy", float(metrics["val_acc"])
    try:
        return f"accuracy on {float(split):.0%} of Training", float(metrics["val_acc"])
    except ValueError:
        return "validation accuracy", float(metrics["val_acc"])
