"""Golden model inference speed against a float32 forward of the same shapes.

What is measured, per shape (MiniLM: 6 layers, hidden 384, 12 heads, FFN 1536;
BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072), sequence length 128, batch 1
(or --batch), random token ids, full attention mask:

  * golden blas: wall time of one `IntegerModel(art, path="blas").forward(ids, mask)`
    (the bit-exact integer model, dot products through float BLAS), median of N reps;
  * float32 torch: wall time of one `transformers.BertModel` forward of the same
    hidden/layers/heads/intermediate size/vocab/max_position (random init, float32,
    eval mode, torch.no_grad(), with the pooler), median of N reps, the reps
    interleaved with the golden ones (A B A B ...) so machine noise hits both;
  * ratio golden / float; the goal is golden <= 2x float;
  * packed: one forward of `path="packed"` (xnor-popcount), for information;
  * load: the first golden blas forward (unpacks the binary weights once), minus
    the golden median. Building the random artifact is not timed.

torch uses as many threads as the machine has cores (recorded with the results).
Each timed call is preceded by a short idle pause (--pause, default 0.3 s): after a
call, OpenBLAS (numpy) and OpenMP (torch) worker threads keep spinning for a while,
and without the pause they steal the cores from the other library's next call
(measured here: torch up to ~2x slower right after a golden forward), biasing the ratio.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for bench.results_md (bitaccel comes from the venv)
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

from bitaccel.golden.model import IntegerModel  # noqa: E402
from bitaccel.golden.random_artifact import random_artifact  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SHAPES = {"minilm": "MiniLM", "bert-base": "BERT-base"}
GOAL = 2.0
SECTION = "## Golden inference speed (bench/golden_speed.py)"
HEADER = ["shape", "seq", "golden blas median s", "float32 torch median s", "ratio golden/float",
          "goal (<= 2x) met", "packed path s", "load s"]


def timed(fn, pause: float = 0.0) -> float:
    time.sleep(pause)  # let the other library's spinning threads park
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def float_model(cfg, seed: int) -> BertModel:
    torch.manual_seed(seed)
    bc = BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                    num_attention_heads=cfg.heads, intermediate_size=cfg.ffn,
                    max_position_embeddings=cfg.max_position)
    return BertModel(bc, add_pooling_layer=True).float().eval()


def bench_shape(name: str, seq: int, batch: int, reps: int, seed: int, packed: bool, pause: float) -> dict:
    art = random_artifact(name, seed=seed)
    cfg = art.config
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(0, cfg.vocab_size, size=(batch, seq))
    mask = np.ones((batch, seq), dtype=bool)
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))

    golden = IntegerModel(art, path="blas")
    first = timed(lambda: golden.forward(ids, mask), pause)          # unpacks the weights once
    fmodel = float_model(cfg, seed)

    def run_float():
        with torch.no_grad():
            fmodel(input_ids=t_ids, attention_mask=t_mask)

    run_float()                                                # warm-up
    g_times, f_times = [], []
    for _ in range(reps):                                      # A B A B ...
        g_times.append(timed(lambda: golden.forward(ids, mask), pause))
        f_times.append(timed(run_float, pause))
    g, f = statistics.median(g_times), statistics.median(f_times)
    p = timed(lambda: IntegerModel(art, path="packed").forward(ids, mask), pause) if packed else float("nan")
    return {"shape": SHAPES.get(name, name), "seq": seq, "golden": g, "float": f, "ratio": g / f,
            "met": g / f <= GOAL, "packed": p, "load": max(first - g, 0.0),
            "golden_all": g_times, "float_all": f_times}


def rows(results: list[dict]) -> list[list[str]]:
    return [[r["shape"], str(r["seq"]), f"{r['golden']:.3f}", f"{r['float']:.3f}", f"{r['ratio']:.2f}",
             "yes" if r["met"] else "no", "-" if r["packed"] != r["packed"] else f"{r['packed']:.3f}",
             f"{r['load']:.3f}"] for r in results]


def text_table(results: list[dict]) -> str:
    body = [HEADER] + rows(results)
    widths = [max(len(row[i]) for row in body) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body)


def markdown_table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows(results)])


def machine() -> str:
    extra = [f"torch threads {torch.get_num_threads()}", f"numpy {np.__version__}", f"torch {torch.__version__}"]
    extra += [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
              if k in os.environ]
    return results_md.machine(*extra)


def section(results: list[dict], command: str, batch: int, reps: int, pause: float) -> str:
    return "\n".join([
        SECTION, "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {machine()}", "",
        f"Batch {batch}, median of {reps} interleaved repetitions (golden, float, golden, float, ...), "
        f"each after a {pause} s idle pause (lets OpenBLAS/OpenMP spinning threads park); "
        "random artifacts (act_bits=1) and random token ids, full mask. Goal: golden blas <= 2x float32. "
        "packed: one forward of path=\"packed\". load: first golden forward (weight unpacking) minus the median.",
        "", markdown_table(results), ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=["tiny", *SHAPES])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions of each model (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pause", type=float, default=0.3, help="idle seconds before each timed call")
    ap.add_argument("--no-packed", action="store_true", help="skip the packed-path forward")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--write-results", type=Path, metavar="MD", help="create/replace this bench's section in MD")
    args = ap.parse_args(argv)

    torch.set_num_threads(os.cpu_count() or 1)
    results = []
    for name in args.shapes:
        r = bench_shape(name, args.seq, args.batch, args.reps, args.seed, not args.no_packed, args.pause)
        print(f"{r['shape']}: golden {[round(t, 3) for t in r['golden_all']]} s, "
              f"float {[round(t, 3) for t in r['float_all']]} s", file=sys.stderr)
        results.append(r)
    print(f"# {machine()}")
    print(markdown_table(results) if args.markdown else text_table(results))
    if args.write_results:
        command = results_md.command_line("bench/golden_speed.py", argv)
        results_md.write_section(args.write_results, SECTION, section(results, command, args.batch, args.reps, args.pause))
        print(f"wrote {args.write_results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
