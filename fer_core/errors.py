"""Errors a user can cause and read: each carries one clear sentence, never a traceback."""


class FerError(Exception):
    """Base class for every error caused by user input (files, arguments, checkpoints)."""


class DataError(FerError):
    """A dataset file or folder that cannot be read as FER2013."""


class ImageError(FerError):
    """An image that cannot be decoded or is unsafe to decode."""


class CheckpointError(FerError):
    """A checkpoint that is missing, corrupt, unsafe or from an unknown format."""


class VideoError(FerError):
    """A video that cannot be decoded, or is too large or too long to analyse."""
