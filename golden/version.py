"""The bitaccel version, in the bottom layer so that every layer may import it (nothing imports upward)."""

__version__ = "0.1.0"
