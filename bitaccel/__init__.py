"""bitaccel: from a binarized (BiT) transformer to verified accelerator hardware."""

from bitaccel.golden.version import __version__

__all__ = ["__version__"]
