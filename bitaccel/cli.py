"""The `bitaccel` command line: one entry point, one sub-command per job."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from . import __version__


def _parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, e.g. 101,7592,102; got {text!r}") from None
    if not values:
        raise ValueError(f"{what} is empty")
    return values


def cmd_random_artifact(args) -> int:
    from golden.artifact import save_artifact
    from golden.random_artifact import random_artifact

    t0 = time.perf_counter()
    art = random_artifact(args.config, seed=args.seed, act_bits=args.act_bits)
    save_artifact(art, args.out)
    c = art.config
    print(f"wrote {args.out}: {args.config} (layers={c.layers} hidden={c.hidden} heads={c.heads} ffn={c.ffn}), "
          f"W1A{args.act_bits}, seed {args.seed}, {os.path.getsize(args.out) / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_infer(args) -> int:
    from golden.artifact import load_artifact
    from golden.model import IntegerModel

    ids = np.array(_parse_ints(args.ids, "--ids"), dtype=np.int64)
    mask = None if args.mask is None else np.array(_parse_ints(args.mask, "--mask"), dtype=np.int64)
    if mask is not None and mask.shape != ids.shape:
        raise ValueError(f"--mask has {mask.size} entries but --ids has {ids.size}")
    art = load_artifact(args.artifact)
    out = IntegerModel(art, path=args.path).forward(ids, mask)
    logits = [float(v) for v in out["logits"][0]]
    pred = int(out["prediction"][0])
    if args.json:
        print(json.dumps({"logits": logits, "prediction": pred}))
    else:
        print("logits:     " + " ".join(f"{v:+.6f}" for v in logits))
        print(f"prediction: {pred}")
    return 0


def cmd_info(args) -> int:
    from golden.artifact import load_artifact

    art = load_artifact(args.artifact)
    bits = sorted(set(art.quant.values()))
    info = {"config": art.config.to_dict(), "numerics": art.numerics.to_dict(), "activation_bits": bits,
            "tokenizer": art.tokenizer, "producer": art.producer, "tensors": len(art.tensors)}
    print(json.dumps(info, indent=2))
    return 0


def cmd_demo(args) -> int:
    """Main job on the embedded default: random MiniLM-shaped artifact -> golden inference, both paths."""
    from golden.artifact import load_artifact, save_artifact
    from golden.model import IntegerModel
    from golden.random_artifact import random_artifact
    from golden.reference import FloatModel

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "minilm-random-w1a1.safetensors")
    print(f"[1/4] random MiniLM-shaped W1A1 artifact (seed {args.seed}) -> {path}")
    save_artifact(random_artifact("minilm", seed=args.seed, act_bits=1), path)
    art = load_artifact(path)
    rng = np.random.default_rng(args.seed)
    ids = np.concatenate([[101], rng.integers(1000, art.config.vocab_size, 30), [102]])
    print(f"[2/4] golden integer inference on {ids.size} tokens (BLAS path)")
    t0 = time.perf_counter()
    blas = IntegerModel(art, "blas").forward(ids, keep_intermediates=True)
    t_blas = time.perf_counter() - t0
    print(f"[3/4] the same inference on the packed xnor-popcount path")
    t0 = time.perf_counter()
    packed = IntegerModel(art, "packed").forward(ids, keep_intermediates=True)
    t_packed = time.perf_counter() - t0
    names = sorted(blas["intermediates"])
    diff = [n for n in names if not np.array_equal(blas["intermediates"][n], packed["intermediates"][n])]
    ints = sum(v.size for v in blas["intermediates"].values())
    print(f"      {len(names)} intermediate tensors, {ints} integers: "
          + ("identical on both paths" if not diff else f"DIFFER in {diff[:3]}"))
    print(f"[4/4] float64 dequantized reference of the same network")
    ref = FloatModel(art.config, art.quant, art.tensors).forward(ids)
    print(f"      integer logits {np.round(blas['logits'][0], 4).tolist()} (prediction {int(blas['prediction'][0])}), "
          f"{t_blas:.2f} s blas / {t_packed:.2f} s packed")
    print(f"      float   logits {np.round(ref['logits'][0], 4).tolist()} (prediction {int(ref['prediction'][0])})")
    return 1 if diff else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bitaccel", description=__doc__)
    p.add_argument("--version", action="version", version=f"bitaccel {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("random-artifact", help="write a seeded random, valid artifact for a BERT-shaped config")
    s.add_argument("--config", choices=["tiny", "minilm", "bert-base"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--act-bits", type=int, choices=[1, 2, 4, 8], default=1, help="activation bits (default 1: W1A1)")
    s.add_argument("--out", required=True, help="artifact file to write (.safetensors)")
    s.set_defaults(func=cmd_random_artifact)

    s = sub.add_parser("infer", help="golden integer inference of one token sequence")
    s.add_argument("--artifact", required=True)
    s.add_argument("--ids", required=True, help="comma-separated token ids, e.g. 101,7592,102")
    s.add_argument("--mask", help="comma-separated 0/1 attention mask (default: all ones)")
    s.add_argument("--path", choices=["blas", "packed"], default="blas", help="how dot products are computed")
    s.add_argument("--json", action="store_true", help="print one JSON object with keys logits, prediction")
    s.set_defaults(func=cmd_infer)

    s = sub.add_parser("info", help="print an artifact's manifest (config, numerics, bits, provenance)")
    s.add_argument("--artifact", required=True)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("demo", help="run the end-to-end path that exists on the embedded default")
    s.add_argument("--out", default="out/demo")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # ArtifactError is a ValueError
        print(f"bitaccel: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
