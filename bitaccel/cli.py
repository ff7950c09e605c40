"""The `bitaccel` command line: one entry point, one sub-command per job."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time

import numpy as np

from bitaccel.golden.inputs import parse_int_list

from . import __version__


def _nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
    if v < 0 or v >= 2 ** 63:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^63), not {text}")
    return v


def check_output_file(path: str, what: str) -> None:
    """Raise ValueError unless `path` can become a file: not a folder, its folder creatable and writable.

    Called before any slow work, so a bad path costs nothing. Creates nothing.
    """
    if os.path.isdir(path):
        raise ValueError(f"{what} {path}: is a folder, expected a file name")
    check_output_folder(os.path.dirname(os.path.abspath(path)), what, path)


def check_output_folder(folder: str, what: str, shown: str | None = None) -> None:
    """Raise ValueError unless `folder` is, or can be created as, a writable folder. Creates nothing."""
    shown = folder if shown is None else shown
    p = os.path.abspath(folder)
    while not os.path.exists(p):            # the deepest part that exists must be a writable folder
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    if not os.path.isdir(p):
        raise ValueError(f"{what} {shown}: {p} is a file, not a folder")
    try:                                    # a real probe (root passes os.access everywhere)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise ValueError(f"{what} {shown}: {p} is not writable ({e.strerror})") from None


def cmd_random_artifact(args) -> int:
    from bitaccel.golden.artifact import save_artifact
    from bitaccel.golden.random_artifact import random_artifact

    check_output_file(args.out, "--out")
    t0 = time.perf_counter()
    art = random_artifact(args.config, seed=args.seed, act_bits=args.act_bits, head=args.head)
    save_artifact(art, args.out)
    c = art.config
    print(f"wrote {args.out}: {args.config} (layers={c.layers} hidden={c.hidden} heads={c.heads} ffn={c.ffn}), "
          f"W1A{args.act_bits}, {art.head} head, seed {args.seed}, {os.path.getsize(args.out) / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_infer(args) -> int:
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.golden.model import IntegerModel

    ids = np.array(parse_int_list(args.ids, "--ids"), dtype=np.int64)
    mask = None if args.mask is None else np.array(parse_int_list(args.mask, "--mask"), dtype=np.int64)
    if mask is not None and mask.shape != ids.shape:
        raise ValueError(f"--mask has {mask.size} entries but --ids has {ids.size}")
    art = load_artifact(args.artifact)
    out = IntegerModel(art, path=args.path).forward(ids, mask)
    if art.head == "span":                  # per-token start / end logits (decoding needs the context's offsets)
        start, end = ([float(v) for v in out[k][0]] for k in ("start_logits", "end_logits"))
        if args.json:
            print(json.dumps({"start_logits": start, "end_logits": end}))
        else:
            print("start logits: " + " ".join(f"{v:+.6f}" for v in start))
            print("end logits:   " + " ".join(f"{v:+.6f}" for v in end))
        return 0
    logits = [float(v) for v in out["logits"][0]]
    pred = int(out["prediction"][0])
    if args.json:
        print(json.dumps({"logits": logits, "prediction": pred}))
    else:
        print("logits:     " + " ".join(f"{v:+.6f}" for v in logits))
        print(f"prediction: {pred}")
    return 0


def cmd_info(args) -> int:
    from bitaccel.golden.artifact import load_artifact

    art = load_artifact(args.artifact)
    bits = sorted(set(art.quant.values()))
    info = {"config": art.config.to_dict(), "head": art.head, "numerics": art.numerics.to_dict(), "activation_bits": bits,
            "tokenizer": art.tokenizer, "producer": art.producer, "tensors": len(art.tensors)}
    print(json.dumps(info, indent=2))
    return 0


#: The trained model `bitaccel demo` runs (BiT W1A1 all-MiniLM-L6-v2 on mr; provenance in its folder's README.md).
DEMO_ARTIFACT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "mr-minilm-w1a1.safetensors")


def cmd_demo(args) -> int:
    """Main job: a trained model's mr sentence through the generated RTL, checked against golden/, measured."""
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.model.data import load_mr
    from bitaccel.sim.run_command import format_run, run_sentence

    def progress(message: str) -> None:
        print(f"      {message}", flush=True)

    art = load_artifact(args.artifact)          # verified before the slow steps
    c = art.config
    print(f"[1/3] artifact {os.path.relpath(args.artifact)}: {c.layers} layers, hidden {c.hidden}, {c.heads} heads, "
          f"FFN {c.ffn}, W1A{max(art.quant.values())}" + (f", from {art.producer}" if art.producer else ""))
    test = load_mr("test")
    if not 0 <= args.example < len(test):
        raise ValueError(f"--example must be in [0, {len(test)}), not {args.example}")
    ex = test[args.example]
    labels = (art.tokenizer or {}).get("labels") or ("0", "1")
    print(f"[2/3] mr test sentence {args.example} (label {ex.label}: {labels[ex.label]}): {ex.text_a!r}")
    print(f"[3/3] {args.array} accelerator on {args.sim}: generate, build, run, compare with golden/")
    r = run_sentence(args.artifact, args.array, args.sim, text=ex.text_a, clock_mhz=args.clock_mhz,
                     build_dir=args.build_dir, progress=progress)
    print(format_run(r))
    verdict = "correct" if r["prediction"] == ex.label else "wrong"
    print(f"label {ex.label}, RTL prediction {r['prediction']} ({verdict}); RTL "
          + ("bit-exact with golden/" if r["bit_exact"] else "DIFFERS from golden/"))
    return 0 if r["bit_exact"] else 1


def _hw_params(args):
    from bitaccel.hw.params import HwParams

    return HwParams(rows=args.rows, cols=args.cols, lanes=args.lanes, max_seq=args.max_seq,
                    max_hidden=args.max_hidden, max_ffn=args.max_ffn, max_head_dim=args.max_head_dim,
                    max_act_bits=args.max_act_bits, max_exp_lut=args.max_exp_lut)


def cmd_generate(args) -> int:
    from bitaccel.hw.generate import generate, resolve_units
    from bitaccel.hw.toolchain import find_verilator, lint_verilog

    params = _hw_params(args).validate()
    units = None if args.units is None else resolve_units(u for u in args.units.replace(" ", "").split(",") if u)
    check_output_folder(args.out, "--out")
    if args.lint:
        find_verilator()                    # a missing linter is reported before minutes of generation
    d = generate(params, args.out, units,
                 progress=lambda message: print(f"bitaccel generate: {message}", file=sys.stderr, flush=True))
    print(f"generated {len(d['units'])} units for a {params.rows}x{params.cols}x{params.lanes} array "
          f"({d['peak_macs_per_cycle']} binary MACs/cycle, {d['total_memory_bits']} memory bits) in "
          f"{d['generation_s']:.1f} s -> {args.out}")
    for name, u in d["units"].items():
        n_in = sum(p["width"] for p in u["ports"] if p["direction"] == "in")
        n_out = sum(p["width"] for p in u["ports"] if p["direction"] == "out")
        print(f"  {name:15s} {u['file']:19s} {u['verilog_bytes'] / 1024:8.1f} KiB  latency {u['latency']}  "
              f"ports {n_in} in / {n_out} out bits  {len(u['memories'])} memories {u['memory_bits']} bits  "
              f"{u['generation_s']:.2f} s")
    if args.lint:
        problems = []
        for name, u in d["units"].items():
            problems += lint_verilog(os.path.join(args.out, u["file"]), name)
        if problems:
            print(f"verilator --lint-only -Wall: {len(problems)} warnings:\n  " + "\n  ".join(problems))
            return 1
        print(f"verilator --lint-only -Wall: clean ({len(d['units'])} files)")
    return 0


def cmd_synth(args) -> int:
    from bitaccel.hw.synth import synthesize

    r = synthesize(_hw_params(args), unit=args.unit, target=args.target, pnr=args.pnr, keep_dir=args.keep)
    if args.json:
        print(json.dumps(r))
        return 0
    lane_bits = r["peak_macs_per_cycle"]
    print(f"{r['unit']} {r['rows']}x{r['cols']}x{r['lanes']} on {r['target']} (yosys {r['yosys']}: {r['command']}, "
          f"{r['synth_s']:.1f} s)")
    per_bit = f", {r['luts'] / lane_bits:.2f} per lane-bit" if r["unit"] == "mac_array" else ""
    print(f"  LUTs {r['luts']} ({r['luts_unmerged']} before merging identical cells{per_bit})  carry {r['carry']}  "
          f"FFs {r['ffs']}  BRAM {r['bram']}  DSP {r['dsp']}")
    print("  cells: " + ", ".join(f"{k} {v}" for k, v in sorted(r["cells"].items())))
    if "pnr" in r:
        q = r["pnr"]
        print(f"  nextpnr-ecp5 {q['device']} {q['package']}: Fmax {q['fmax_mhz']:.1f} MHz (target {q['target_mhz']} MHz, "
              f"ports registered by a {q['harness_ffs']}-FF harness, {q['pnr_s']:.1f} s)")
    return 0


def _add_hw_params(s) -> None:
    from bitaccel.hw.params import HwParams

    d = HwParams()
    s.add_argument("--rows", type=int, required=True, help="MAC array rows R")
    s.add_argument("--cols", type=int, required=True, help="MAC array columns C")
    s.add_argument("--lanes", type=int, required=True, help="bits per PE per cycle L (power of two, 8..1024)")
    s.add_argument("--max-seq", type=int, default=d.max_seq, help=f"longest sequence (default {d.max_seq})")
    s.add_argument("--max-hidden", type=int, default=d.max_hidden, help=f"largest hidden size (default {d.max_hidden})")
    s.add_argument("--max-ffn", type=int, default=d.max_ffn, help=f"largest FFN size (default {d.max_ffn})")
    s.add_argument("--max-head-dim", type=int, default=d.max_head_dim,
                   help=f"largest head dimension (default {d.max_head_dim})")
    s.add_argument("--max-act-bits", type=int, default=d.max_act_bits,
                   help=f"widest activation code, 1/2/4/8 (default {d.max_act_bits})")
    s.add_argument("--max-exp-lut", type=int, default=d.max_exp_lut,
                   help=f"softmax exp LUT entries (default {d.max_exp_lut})")


def cmd_train(args) -> int:
    from bitaccel.model.data import default_model_dir
    from bitaccel.model.train import train

    model = args.model if args.model is not None else str(default_model_dir())
    r = train(args.task, model, args.schedule, args.out, method=args.method, progressive=args.progressive,
              bi_attention=args.bi_attention, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              alpha_lr=args.alpha_lr, max_len=args.max_len, max_steps=args.max_steps, eval_every=args.eval_every,
              save_every=args.save_every, seed=args.seed, glue_dir=args.glue_dir, finetuned=args.finetuned,
              int_epochs=args.int_epochs, squad_dir=args.squad_dir, doc_stride=args.doc_stride,
              max_query_len=args.max_query_len, resume=args.resume, quiet=args.quiet)
    if r["stages"]:      # empty on ranks > 0 under torchrun
        print(f"run {r['run_dir']}")
        for s in r["stages"]:
            other = " ".join(f"{split} {m['main']:.4f}" for split, m in s["metrics"].items()
                             if split != "dev" and m is not None)
            best = "n/a" if s["best_dev"] is None else f"{s['best_dev']:.4f}"
            print(f"  stage {s['name']:9s} {s['precision']:7s} best dev {best} (step {s['best_step']}) {other}  "
                  f"train {s['train_wall_s']:.1f} s  [{s['source']}]")
    return 0


def cmd_eval(args) -> int:
    from bitaccel.model.train import evaluate_run

    r = evaluate_run(args.run, split=args.split, integer=args.integer, stage=args.stage, glue_dir=args.glue_dir,
                     squad_dir=args.squad_dir, n_best=args.n_best, max_answer_length=args.max_answer_length)
    if args.json:
        print(json.dumps(r))
        return 0
    if "features" in r:                     # squad: official EM / F1 in %
        print(f"{r['run']}: task {r['task']}, stage {r['stage']} ({r['precision']}), split {r['split']}, "
              f"{r['examples']} questions in {r['features']} windows")
        print(f"  pytorch: EM {r['metrics']['exact_match']:.2f} F1 {r['metrics']['f1']:.2f}  "
              f"(n-best {r['n_best']}, max answer length {r['max_answer_length']} tokens)")
        if "integer" in r:
            m = r["integer"]["metrics"]
            print(f"  integer: EM {m['exact_match']:.2f} F1 {m['f1']:.2f}  (golden IntegerModel on the artifact)")
        return 0
    fmt = lambda m: " ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "main")     # noqa: E731
    print(f"{r['run']}: task {r['task']}, stage {r['stage']} ({r['precision']}), split {r['split']}, "
          f"{r['examples']} examples")
    print(f"  pytorch: {fmt(r['metrics'])}")
    if "integer" in r:
        i = r["integer"]
        agree = f"  agreement {100 * i['agreement']:.2f}%" if "agreement" in i else ""
        print(f"  integer: {fmt(i['metrics'])}{agree}  max |logit diff| {i['max_logit_diff']:.4g}")
    return 0


def cmd_export(args) -> int:
    from bitaccel.model.train import export_run

    art = export_run(args.run, args.out, stage=args.stage)
    bits = sorted(set(art.quant.values()))
    print(f"wrote {args.out}: {art.head} head, {art.config.layers} layers, hidden {art.config.hidden}, "
          f"activation bits {bits}, "
          f"residual_frac {art.numerics.residual_frac}, {os.path.getsize(args.out) / 2**20:.2f} MiB")
    return 0


def _add_train_commands(sub) -> None:
    """The `train`, `eval` and `export` sub-commands (model/train.py; imported only when they run)."""
    s = sub.add_parser("train", help="fine-tune the FP teacher and multi-distill BiT students along a schedule")
    s.add_argument("--task", required=True, help="mr, a GLUE task (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte), "
                                                 "or squad (SQuAD v1.1 span extraction, with --squad-dir)")
    s.add_argument("--model", help="Hugging Face BERT folder, a bitaccel model folder or a previous run "
                                   "(default: the all-MiniLM-L6-v2 package's folder)")
    s.add_argument("--schedule", default="32/32,1/2,1/1", help="weight/act bits per step (default 32/32,1/2,1/1); "
                   "a final 'int' adds the integer fine-tune through the hardware's integers, e.g. 32/32,1/2,1/1,int")
    s.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    s.add_argument("--method", default="bit", help="BiT Table 2 preset: bit (default), bit-onestep, binarybert, kd, "
                                                   "two-set, scale, scale-bias (see model/train.py)")
    s.add_argument("--progressive", action="store_true", help="keep the FP model as every step's teacher (A.1)")
    s.add_argument("--bi-attention", action="store_true", help="BiBERT Bi-Attention in the students")
    s.add_argument("--epochs", type=int, help="epochs per step (default: the task's)")
    s.add_argument("--batch-size", type=int, help="global batch size (default: the task's)")
    s.add_argument("--lr", type=float, help="learning rate (default: the task's)")
    s.add_argument("--alpha-lr", type=float, help="learning rate of every alpha (default 1e-4, as the official BiT code)")
    s.add_argument("--int-epochs", type=int, help="epochs of the final 'int' stage (default 1; --max-steps caps it)")
    s.add_argument("--max-len", type=int, help="tokens per example (default: the task's)")
    s.add_argument("--max-steps", type=int, help="optimizer steps per schedule step (overrides --epochs)")
    s.add_argument("--eval-every", type=int, help="evaluate on dev every N steps (always at each epoch end)")
    s.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps (default 100)")
    s.add_argument("--seed", type=_nonneg_int, default=0)
    s.add_argument("--glue-dir", help="GLUE data folder (GLUE tasks)")
    s.add_argument("--squad-dir", help="squad: folder with train-v1.1.json and dev-v1.1.json (official format)")
    s.add_argument("--doc-stride", type=int, help="squad: context tokens shared by consecutive windows (default 128)")
    s.add_argument("--max-query-len", type=int, help="squad: question tokens kept (default 64)")
    s.add_argument("--finetuned", action="store_true", help="--model is already fine-tuned on the task: skip step 0")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bars or evaluation lines")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="evaluate a run's final model (optionally the golden integer model too)")
    s.add_argument("run", help="run folder")
    s.add_argument("--split", default="dev", help="dev (default) or test (mr)")
    s.add_argument("--stage", type=int, help="schedule step to evaluate (default: the last)")
    s.add_argument("--integer", metavar="ARTIFACT", help="also run this exported artifact in golden.IntegerModel")
    s.add_argument("--glue-dir", help="GLUE data folder (default: the run's)")
    s.add_argument("--squad-dir", help="squad runs: SQuAD folder (default: the run's)")
    s.add_argument("--n-best", type=int, help="squad runs: start / end candidates per window (default 20)")
    s.add_argument("--max-answer-length", type=int, help="squad runs: longest answer in tokens (default 30)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("export", help="export a run's final model to an artifact (classifier or span head)")
    s.add_argument("run", help="run folder")
    s.add_argument("--out", required=True, help="artifact file to write (.safetensors)")
    s.add_argument("--stage", type=int, help="schedule step to export (default: the last)")
    s.set_defaults(func=cmd_export)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bitaccel <command>: error: <what is wrong> (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from bitaccel.hw.spec.units import UNITS

    p = _Parser(prog="bitaccel", description=__doc__)
    p.add_argument("--version", action="version", version=f"bitaccel {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("random-artifact", help="write a seeded random, valid artifact for a BERT-shaped config")
    s.add_argument("--config", choices=["tiny", "minilm", "bert-base"], default="tiny")
    s.add_argument("--seed", type=_nonneg_int, default=0)
    s.add_argument("--act-bits", type=int, choices=[1, 2, 4, 8], default=1, help="activation bits (default 1: W1A1)")
    s.add_argument("--head", choices=["classifier", "span"], default="classifier",
                   help="classifier (default: pooler + classifier) or span (SQuAD start / end logits per token)")
    s.add_argument("--out", required=True, help="artifact file to write (.safetensors)")
    s.set_defaults(func=cmd_random_artifact)

    s = sub.add_parser("infer", help="golden integer inference of one token sequence")
    s.add_argument("--artifact", required=True)
    s.add_argument("--ids", required=True, help="comma-separated token ids, e.g. 101,7592,102")
    s.add_argument("--mask", help="comma-separated 0/1 attention mask (default: all ones)")
    s.add_argument("--path", choices=["blas", "packed"], default="blas", help="how dot products are computed")
    s.add_argument("--json", action="store_true", help="print one JSON object with keys logits, prediction "
                                                       "(span artifacts: start_logits, end_logits)")
    s.set_defaults(func=cmd_infer)

    s = sub.add_parser("info", help="print an artifact's manifest (config, numerics, bits, provenance)")
    s.add_argument("--artifact", required=True)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("demo", help="a trained model's mr sentence through the generated accelerator RTL (make demo)")
    s.add_argument("--artifact", default=DEMO_ARTIFACT, help="model to run (default: the shipped BiT W1A1 MiniLM)")
    s.add_argument("--example", type=_nonneg_int, default=5, help="index of the mr test sentence (default 5)")
    s.add_argument("--array", default="8x8x64", help="array size RxCxL (default 8x8x64)")
    s.add_argument("--sim", default="verilator", help="verilator (default) or icarus")
    s.add_argument("--clock-mhz", type=float, default=200.0, help="clock for the latency (default 200)")
    s.add_argument("--build-dir", default="sim_build", help="simulator builds (default sim_build/)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("generate", help="generate the accelerator's Verilog and bitaccel_hw.json for an array size")
    _add_hw_params(s)
    s.add_argument("--units", help="comma-separated units (default: all) of " + ", ".join(UNITS))
    s.add_argument("--lint", action="store_true", help="lint every file with verilator --lint-only -Wall")
    s.add_argument("--out", required=True, help="folder to write into")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("synth", help="FPGA resources of one unit (Yosys), optionally ECP5 Fmax (nextpnr)")
    _add_hw_params(s)
    s.add_argument("--unit", default="mac_array", help="unit to synthesize (default mac_array) of " + ", ".join(UNITS))
    s.add_argument("--target", required=True, help="FPGA family: xilinx (7-series), ecp5 or ice40")
    s.add_argument("--pnr", action="store_true", help="ecp5 only: place and route with nextpnr-ecp5, report Fmax")
    s.add_argument("--keep", metavar="DIR", help="keep Verilog, scripts, logs and netlists in DIR")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_synth)
    _add_train_commands(sub)

    from bitaccel.sim.commands import add_commands  # `simulate` and `report`

    add_commands(sub)
    from bitaccel.sim.run_command import add_command as add_run_command  # `run`

    add_run_command(sub)
    return p


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so every `finally` (child processes) runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done, 1 a check failed, 2 bad input or a failed tool, 130 / 143 interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:                 # --help, --version, or a one-line usage error
        return e.code if isinstance(e.code, int) else 2
    in_main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        status = args.func(args)
        sys.stdout.flush()                  # a closed pipe shows here, not at interpreter exit
        return status
    except (ValueError, OSError) as e:      # ArtifactError is a ValueError, ToolError an OSError
        if isinstance(e, BrokenPipeError):
            return _broken_pipe()
        print(f"bitaccel: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bitaccel: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("bitaccel: terminated", file=sys.stderr)
        return 143
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_term)


def _one_line(e: BaseException) -> str:
    """The first line of an error message (a tool's log tail stays in its log file)."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return lines[0] + (f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else "")


def _broken_pipe() -> int:
    """stdout's reader went away (`bitaccel report | head`): stop quietly, as a killed-by-SIGPIPE tool would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # so the interpreter's final flush does not complain again
    except (OSError, ValueError):
        pass
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
