"""The one integer-parameter check of hw/ (pure Python): `require_int`."""
from __future__ import annotations

__all__ = ["require_int"]


def require_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Return `value` if it is an int (not a bool) in [lo, hi]; TypeError for a non-int, ValueError if out of range."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return value
