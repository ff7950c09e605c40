"""Fixed-point formats and derived bit widths: the one source of truth for every width.

A `NumericFormat` holds the few free choices (fractional bits of each fixed-point
format); every other width is derived from it and from the model shape by the
functions below. docs/numerics.md describes each format in words.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Width of the residual stream (signed two's complement, bits).
RESIDUAL_BITS = 16
#: Width of LayerNorm gamma (signed, bits); its fractional bits are `gamma_frac`.
GAMMA_BITS = 16
#: Requantization multipliers M satisfy 2**(MULT_BITS-2) <= M < 2**(MULT_BITS-1) (see `fixed_multiplier`).
MULT_BITS = 16
#: Width of a requantization offset B (signed, bits).
OFFSET_BITS = 48
#: Largest right shift S of a requantization.
MAX_SHIFT = 62
#: rsqrt: V is shifted right by an even amount until it has at most this many bits.
RSQRT_IN_BITS = 30
#: rsqrt: r = floor(2**RSQRT_Q / sqrt(V_s)), so r has at most RSQRT_Q + 1 bits.
RSQRT_Q = 30
#: Supported activation bit widths (1 = binary).
ACT_BITS = (1, 2, 4, 8)
#: Packed words are 64-bit, least significant bit first.
WORD_BITS = 64
#: Threshold that makes a binarization always fire (clamped into the accumulator range).
ALWAYS = -(1 << 62)


@dataclasses.dataclass(frozen=True)
class NumericFormat:
    """Free fixed-point choices of an artifact (fractional bits, all unsigned ints).

    Members
    -------
    residual_frac : fractional bits of the 16-bit residual stream (value = q / 2**f).
    gamma_frac : fractional bits of the 16-bit LayerNorm gamma.
    ln_norm_frac : fractional bits of the normalized LayerNorm value before gamma.
    exp_frac : fractional bits of exp LUT entries; exp(0) = 2**exp_frac exactly.
    theta_frac : fractional bits of the 1-bit attention-probability threshold.
    prob_frac : fractional bits of a multi-bit attention probability (1.0 = 2**prob_frac).
    recip_guard : extra bits of the softmax reciprocal (see `golden.softmax`).
    """

    residual_frac: int = 8
    gamma_frac: int = 11
    ln_norm_frac: int = 14
    exp_frac: int = 15
    theta_frac: int = 16
    prob_frac: int = 15
    recip_guard: int = 8

    def validate(self) -> "NumericFormat":
        limits = {
            "residual_frac": (0, RESIDUAL_BITS - 2),
            "gamma_frac": (0, GAMMA_BITS - 2),
            "ln_norm_frac": (4, 20),
            "exp_frac": (4, 20),
            "theta_frac": (4, 24),
            "prob_frac": (4, 20),
            "recip_guard": (0, 16),
        }
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"numeric format: {name} must be an int in [{lo}, {hi}], not {v!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NumericFormat":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        missing = names - set(d)
        if unknown or missing:
            raise ValueError(f"numeric format: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        return cls(**d).validate()


# ----------------------------------------------------------------------------- codes
def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range [lo, hi] of an activation code.

    1-bit signed codes are {-1, +1}; other signed codes are two's complement
    [-2**(b-1), 2**(b-1) - 1]; unsigned codes are [0, 2**b - 1] (1-bit: {0, 1}).
    """
    if bits not in ACT_BITS and bits != 32:
        raise ValueError(f"activation bits must be one of {ACT_BITS}, not {bits!r}")
    if signed:
        return (-1, 1) if bits == 1 else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return 0, (1 << bits) - 1


def code_max_abs(bits: int, signed: bool) -> int:
    lo, hi = code_range(bits, signed)
    return max(abs(lo), abs(hi))


def signed_bits_for(max_abs: int) -> int:
    """Bits of a two's complement integer holding every value in [-max_abs, max_abs]."""
    return int(max_abs).bit_length() + 1


def acc_max_abs(k: int, a_bits: int, a_signed: bool, b_bits: int = 1, b_signed: bool = True) -> int:
    """Largest |dot product| of two length-k code vectors (b defaults to +-1 weights)."""
    return k * code_max_abs(a_bits, a_signed) * code_max_abs(b_bits, b_signed)


def acc_bits(k: int, a_bits: int, a_signed: bool, b_bits: int = 1, b_signed: bool = True) -> int:
    """Accumulator width (signed bits) for a length-k dot product: never overflows."""
    return signed_bits_for(acc_max_abs(k, a_bits, a_signed, b_bits, b_signed))


def residual_range() -> tuple[int, int]:
    return -(1 << (RESIDUAL_BITS - 1)), (1 << (RESIDUAL_BITS - 1)) - 1


def layernorm_var_bits(hidden: int) -> int:
    """Unsigned bits of V' = H*sum(x^2) - sum(x)^2 for H residual values."""
    h = max(1, (hidden - 1).bit_length())
    return 2 * RESIDUAL_BITS + 2 * h


def exp_sum_bits(fmt: NumericFormat, max_seq: int) -> int:
    """Unsigned bits of the softmax row sum of at most `max_seq` exp LUT entries."""
    return fmt.exp_frac + 1 + max(1, (max_seq - 1).bit_length())


# ----------------------------------------------------------------------------- rounding
def rshift_round(x: np.ndarray, s: int) -> np.ndarray:
    """Round-half-up right shift of int64 values: floor((x + 2**(s-1)) / 2**s); s <= 0 shifts left."""
    x = np.asarray(x, dtype=np.int64)
    s = int(s)
    if s <= 0:
        return x << np.int64(-s)
    y = x + np.int64(1 << (s - 1))
    y >>= np.int64(s)
    return y


def saturate(x: np.ndarray, lo, hi) -> np.ndarray:
    """Clamp to [lo, hi] (saturation, never wrap-around)."""
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def fixed_multiplier(m: float) -> tuple[int, int]:
    """Represent a positive real m as M * 2**-S with 2**(MULT_BITS-2) <= M < 2**(MULT_BITS-1).

    Returns (M, S). Raises ValueError when S would leave [0, MAX_SHIFT].
    """
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"requantization multiplier must be positive and finite, not {m!r}")
    e = math.floor(math.log2(m))
    s = (MULT_BITS - 2) - e
    mm = round(m * 2.0 ** s)
    if mm >= 1 << (MULT_BITS - 1):  # rounding carried into the next power of two
        mm >>= 1
        s -= 1
    if not 0 <= s <= MAX_SHIFT:
        raise ValueError(f"requantization multiplier {m!r} needs shift {s}, outside [0, {MAX_SHIFT}]")
    return int(mm), int(s)
