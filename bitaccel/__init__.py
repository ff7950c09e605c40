"""bitaccel: from a binarized (BiT) transformer to verified accelerator hardware."""

__version__ = "0.1.0"
