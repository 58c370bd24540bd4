"""Errors that carry one plain sentence for the user.

Every failure a user can cause (a bad file, a missing model, a full disk) is raised as a
``LabelFreeError`` subclass whose ``str()`` is a sentence saying what went wrong and what to do.
The GUI shows it in a dialog or the status bar; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path


class LabelFreeError(Exception):
    """Base class: ``str(err)`` is one plain sentence for the user."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None

    def __str__(self) -> str:
        return self.message


# --- reading images -------------------------------------------------------------------------
class ImageReadError(LabelFreeError):
    """An input image could not be read."""


class FileAccessError(ImageReadError):
    """The path does not exist, is a folder, or cannot be read."""


class UnsupportedFormatError(ImageReadError):
    """The file is not a TIFF or PNG (e.g. a JPEG or a text file renamed .tif)."""


class CorruptImageError(ImageReadError):
    """The file is truncated, zero-size or otherwise damaged."""


class UnsupportedDtypeError(ImageReadError):
    """The pixel type (complex, bool, ...) cannot be used."""


class EmptyImageError(ImageReadError):
    """The image has no pixels or holds no finite value."""


class ImageTooLargeError(ImageReadError):
    """The image (as its header claims it) would not fit in the free memory."""


class ChannelError(ImageReadError):
    """A channel name or index does not exist, or is ambiguous."""


class RGBImageError(ImageReadError):
    """An RGB image was given where one grayscale channel is needed."""


# --- writing images -------------------------------------------------------------------------
class ImageWriteError(LabelFreeError):
    """An output could not be written; nothing partial is left behind."""


class OutputNotWritableError(ImageWriteError):
    """The output folder is read-only or missing."""


class DiskFullError(ImageWriteError):
    """There is not enough free space at the destination."""


class OverwriteInputError(ImageWriteError):
    """The output path is one of the inputs, which are never overwritten."""


class ForeignOutputError(ImageWriteError):
    """Something LabelFree did not write (a folder, a file) is at an output's name; it is never replaced."""


# --- models ---------------------------------------------------------------------------------
class ModelError(LabelFreeError):
    """A model package is missing, invalid or unsafe."""


class ModelNotFoundError(ModelError):
    """No installed model has the requested id."""


class ManifestError(ModelError):
    """The manifest is missing a field or has a bad value; ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None, path: str | Path | None = None):
        super().__init__(message, path=path)
        self.field = field


class WeightsIntegrityError(ModelError):
    """The weights do not match the sha256 recorded in the manifest."""


class UnsafeModelError(ModelError):
    """The file would need code execution (a pickle with classes) to load."""


# --- running --------------------------------------------------------------------------------
class InputShapeError(LabelFreeError):
    """The image does not fit what the model takes (channels, dimensions)."""


class SettingsError(LabelFreeError):
    """A prediction or training setting is out of its range (a zero tile, negative samples…)."""


class DeviceError(LabelFreeError):
    """The requested compute device is not available."""


class TrainingDataError(LabelFreeError):
    """Paired training data is missing, unpaired or misregistered."""
