"""Generation parameters of the accelerator and every width derived from them.

Widths come from golden.formats (the one source of truth for the numerics); this module
only adds the hardware limits (array size, largest model dimensions the hardware accepts).
"""
from __future__ import annotations

import dataclasses

from bitaccel.golden.formats import (ACT_BITS, NumericFormat, RESIDUAL_BITS, acc_max_abs, exp_sum_bits, layernorm_var_bits,
                            signed_bits_for)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclasses.dataclass(frozen=True)
class HwParams:
    """Generation-time parameters.

    Members
    -------
    rows, cols : MAC array size R x C (processing elements).
    lanes : bits per PE per cycle L (power of two, 8..1024). Peak binary MACs/cycle = R*C*L.
    max_seq : longest sequence the hardware accepts (softmax row length, P.V reduction).
    max_hidden, max_ffn, max_head_dim : largest model dimensions (reduction lengths, LayerNorm width).
    max_act_bits : widest activation code (1, 2, 4 or 8); bit-serial planes up to this.
    max_exp_lut : exp LUT entries the softmax unit stores per layer.
    numerics : the fixed-point format the units implement (docs/numerics.md).
    """

    rows: int = 8
    cols: int = 8
    lanes: int = 64
    max_seq: int = 128
    max_hidden: int = 768
    max_ffn: int = 3072
    max_head_dim: int = 64
    max_act_bits: int = 8
    max_exp_lut: int = 1024
    numerics: NumericFormat = dataclasses.field(default_factory=NumericFormat)

    def validate(self) -> "HwParams":
        """Raise ValueError naming the first invalid parameter (before any generation)."""
        for name in ("rows", "cols", "lanes", "max_seq", "max_hidden", "max_ffn", "max_head_dim", "max_exp_lut"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if not _is_pow2(self.lanes) or not 8 <= self.lanes <= 1024:
            raise ValueError(f"lanes must be a power of two in [8, 1024], not {self.lanes}")
        if self.rows > 256 or self.cols > 256:
            raise ValueError(f"rows and cols must be <= 256, not {self.rows} x {self.cols}")
        if self.max_act_bits not in ACT_BITS:
            raise ValueError(f"max_act_bits must be one of {ACT_BITS}, not {self.max_act_bits!r}")
        if self.max_hidden > 4096 or self.max_ffn > 16384 or self.max_seq > 4096:
            raise ValueError("limits: max_hidden <= 4096, max_ffn <= 16384 and max_seq <= 4096 "
                             "(wider sums do not fit the 64-bit LayerNorm/softmax arithmetic)")
        if self.max_head_dim > self.max_hidden:
            raise ValueError(f"max_head_dim {self.max_head_dim} exceeds max_hidden {self.max_hidden}")
        self.numerics.validate()
        return self

    # ------------------------------------------------------------------ derived widths
    @property
    def peak_macs_per_cycle(self) -> int:
        return self.rows * self.cols * self.lanes

    @property
    def max_k(self) -> int:
        """Longest reduction the MAC array performs (linears, Q.K^T over a head, P.V over keys)."""
        return max(self.max_hidden, self.max_ffn, self.max_seq, self.max_head_dim)

    @property
    def acc_width(self) -> int:
        """Signed accumulator bits: the largest |dot product| of any supported operand pair."""
        b = self.max_act_bits
        worst = max(
            acc_max_abs(max(self.max_hidden, self.max_ffn), b, False),      # activations x +-1 weights
            acc_max_abs(max(self.max_hidden, self.max_ffn), b, True),
            acc_max_abs(self.max_head_dim, b, True, b, True),               # Q.K^T
            acc_max_abs(self.max_seq, b, False, b, True),                   # P.V
        )
        return signed_bits_for(worst)

    def array_uses(self) -> list[tuple[str, int, int, int]]:
        """The MAC array's products within the limits: (name, K, a plane bits, b plane bits)."""
        b = self.max_act_bits
        return [("linear", max(self.max_hidden, self.max_ffn), b, 1),     # activations x +-1 weights
                ("q.k^T", self.max_head_dim, b, b),
                ("p.v", self.max_seq, b, b)]

    @property
    def pe_acc_width(self) -> int:
        """Unsigned bits of the array's PE / row / column accumulators: the largest
        bit_length(K (2**a - 1)(2**b - 1)) over `array_uses` (12 for W1A1 up to K = 3072,
        23 for 8-bit x 8-bit planes at 128 keys)."""
        return max((k * ((1 << a) - 1) * ((1 << b) - 1)).bit_length() for _, k, a, b in self.array_uses())

    @property
    def array_row_counts(self) -> bool:
        """Whether the array needs its row popcounts: only when a b operand can be multi-bit
        (max_act_bits > 1); at W1A1 every b operand (weights, K, V) is +-1."""
        return self.max_act_bits > 1

    @property
    def residual_width(self) -> int:
        return RESIDUAL_BITS

    @property
    def exp_sum_width(self) -> int:
        return exp_sum_bits(self.numerics, self.max_seq)

    @property
    def layernorm_var_width(self) -> int:
        return layernorm_var_bits(self.max_hidden)

    def describe(self) -> dict:
        """JSON-ready description (parameters and derived widths)."""
        d = dataclasses.asdict(self)
        d["numerics"] = self.numerics.to_dict()
        d.update(peak_macs_per_cycle=self.peak_macs_per_cycle, max_k=self.max_k, acc_width=self.acc_width,
                 pe_acc_width=self.pe_acc_width, array_row_counts=self.array_row_counts,
                 residual_width=self.residual_width, exp_sum_width=self.exp_sum_width,
                 layernorm_var_width=self.layernorm_var_width)
        return d
