"""The encoder as an ordered list of blocks: the one place that states the order of operations.

This is the order of `golden.model.IntegerModel.forward` (docs/numerics.md §7), lowered to
the units of the accelerator. Each block names the artifact tensors it uses, the golden
intermediates it produces and the buffer regions (roles of `hw.spec.buffers.plan_buffers`)
it reads and writes; `compiler.lower` turns blocks into instructions with addresses.

    Embed                                   token words -> res.s                  embeddings.sum
    Norm(embeddings.ln)                     res.s -> res.h                        embeddings.ln
    per layer i:
      Quant(q.in) Linear(q)                 res.h -> act.x -> act.q (HEADS)       q.in, q.acc, q.out
      Quant(k.in) Linear(k)                 res.h -> act.x -> act.k (HEADS)       k.in, k.acc, k.out
      Quant(v.in) Linear(v)                 res.h -> act.x -> act.vt (TRANS)      v.in, v.acc, v.out
      per head: Scores, Softmax, Context    act.q/k -> scr.s -> act.p; act.p/vt -> act.x (o.in cols of the head)
      Linear(o, residual)                   act.x -> res.y                        o.acc, o.out
      Norm(ln1, add)                        res.y + res.h -> res.s -> res.h1      res1, ln1
      Quant(ffn1.in) Linear(ffn1)           res.h1 -> act.x -> act.f (ffn2.in, ReLU folded)
      Linear(ffn2, residual)                act.f -> res.y                        ffn2.acc, ffn2.out
      Norm(ln2, add)                        res.y + res.h1 -> res.s -> res.h      res2, ln2
    classifier head:
    Quant(pooler.in, [CLS] row)             res.h row 0 -> act.cls                pooler.in
    Linear(pooler, to external memory)      act.cls -> output                     pooler.acc
    span head: no pooler; the last Norm(ln2) also writes its sums and outputs (the final residual
    stream of every token) to the external output (`Norm.to_output`)
"""
from __future__ import annotations

import dataclasses

from bitaccel.golden.config import ModelConfig, check_head
from bitaccel.hw.spec.isa import Layout

__all__ = ["Embed", "Norm", "Quant", "Linear", "Scores", "Softmax", "Context", "encoder_blocks"]


@dataclasses.dataclass(frozen=True)
class Embed:
    """On-chip embedding gather + add of every token -> residual region `out` (checkpoint embeddings.sum)."""

    out: str = "s"


@dataclasses.dataclass(frozen=True)
class Norm:
    """[Residual add `src` + `res` -> `sum_to`], then LayerNorm `ln` -> `out`.

    `ln` is the artifact prefix and the checkpoint name of the output; `sum_name` the
    checkpoint name of the sum (None without add). `to_output`: the instruction always writes its
    trace (per row the sum row, then the output row) to the external output region, whatever the
    compile's trace option (the span head's final residual stream).
    """

    ln: str
    src: str
    out: str
    res: str | None = None
    sum_to: str | None = None
    sum_name: str | None = None
    to_output: bool = False


@dataclasses.dataclass(frozen=True)
class Quant:
    """Residual rows of `src` -> codes of quantization site `site` in activation region `out` (ROWS).

    `rows` None = all tokens; 1 = the [CLS] row only.
    """

    site: str
    src: str
    out: str
    rows: int | None = None


@dataclasses.dataclass(frozen=True)
class Linear:
    """Binary linear `lin` on the codes of site `a_site` (region `a`), with its post-op.

    post "site": threshold / requant into the codes of `out_site` (region `out`, `layout`);
    post "residual": 16-bit requant `lin + '.out'` into residual region `out`;
    post "ext": accumulators to the external output (pooler).
    """

    lin: str
    a_site: str
    a: str
    post: str
    out: str
    out_site: str | None = None
    layout: Layout = Layout.ROWS
    rows: int | None = None


@dataclasses.dataclass(frozen=True)
class Scores:
    """Q.K^T of one head: act.q, act.k -> score region (checkpoint layers.i.scores[head])."""

    layer: int
    head: int


@dataclasses.dataclass(frozen=True)
class Softmax:
    """Softmax of one head's scores -> probability codes in act.p (checkpoints [p], probs; exp, exp_sum and
    recip are the softmax unit's internals, not mapped)."""

    layer: int
    head: int


@dataclasses.dataclass(frozen=True)
class Context:
    """P.V of one head: act.p, act.vt -> o.in codes of the head's channels in act.x (ctx.acc, o.in)."""

    layer: int
    head: int


def encoder_blocks(config: ModelConfig, head: str = "classifier") -> list:
    """The blocks of one inference, in execution order (see the module docstring); `head` as the artifact's."""
    span = check_head(head) == "span"
    blocks: list = [Embed(out="s"), Norm("embeddings.ln", src="s", out="h")]
    for i in range(config.layers):
        pre = f"layers.{i}"
        for lin, region, layout in (("q", "q", Layout.HEADS), ("k", "k", Layout.HEADS), ("v", "vt", Layout.TRANS)):
            blocks.append(Quant(f"{pre}.{lin}.in", src="h", out="x"))
            blocks.append(Linear(f"{pre}.{lin}", f"{pre}.{lin}.in", "x", "site", region, f"{pre}.{lin}.out", layout))
        for h in range(config.heads):
            blocks += [Scores(i, h), Softmax(i, h), Context(i, h)]
        blocks.append(Linear(f"{pre}.o", f"{pre}.o.in", "x", "residual", "y"))
        blocks.append(Norm(f"{pre}.ln1", src="y", res="h", sum_to="s", sum_name=f"{pre}.res1", out="h1"))
        blocks.append(Quant(f"{pre}.ffn1.in", src="h1", out="x"))
        blocks.append(Linear(f"{pre}.ffn1", f"{pre}.ffn1.in", "x", "site", "f", f"{pre}.ffn2.in"))
        blocks.append(Linear(f"{pre}.ffn2", f"{pre}.ffn2.in", "f", "residual", "y"))
        blocks.append(Norm(f"{pre}.ln2", src="y", res="h1", sum_to="s", sum_name=f"{pre}.res2", out="h"))
    if span:
        blocks[-1] = dataclasses.replace(blocks[-1], to_output=True)
        return blocks
    blocks.append(Quant("pooler.in", src="h", out="cls", rows=1))
    blocks.append(Linear("pooler", "pooler.in", "cls", "ext", "output", rows=1))
    return blocks
