"""Count how many bad inputs and corrupted artifacts the CLI and the artifact loader handle cleanly.

* Bad inputs: every row of `tests/test_cli_bad_input.py`'s BAD_INPUTS table (each command x
  its bad inputs) runs through `bitaccel.cli.main` in a fresh temporary folder. Handled =
  exit status 2, exactly one line on stderr naming the error, no traceback, nothing written.
* Corruptions: seeded corruptions (`tests/artifact_corruptions.py`: byte flips, header
  flips, truncations, appended bytes, header-length edits, sealed structural header edits)
  of a tiny random W1A1 artifact go through `golden.artifact.load_artifact`. Handled =
  ArtifactError naming the file in one line; anything else (another exception, an
  accepted file) is a failure.
* A sample of corruptions goes through every command that reads an artifact (`infer`,
  `info`, `report --model`): handled = exit 2, one line on stderr naming the file.

Prints the counts; ``--write-results docs/RESULTS.md`` writes the "Reliability" section.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for bench.results_md (bitaccel comes from the venv)
    sys.path.insert(0, str(ROOT))

from bitaccel.cli import main  # noqa: E402
from bitaccel.golden.artifact import ArtifactError, load_artifact, save_artifact  # noqa: E402
from bitaccel.golden.random_artifact import random_artifact  # noqa: E402
from tests.artifact_corruptions import corruptions  # noqa: E402
from tests.test_cli_bad_input import BAD_INPUTS  # noqa: E402

import results_md  # noqa: E402

SECTION = "## Reliability (bench/reliability.py)"
#: Measured once, by the first (failing) run of the same table and generator, not re-measured here.
BEFORE = ("Before the fixes of issue 10 (commit 7297498), the first run of the same bad-input table failed 19 of "
          "its 87 rows (tracebacks, two-line argparse errors, accepted bad values, files written before the error), "
          "and that loader accepted every artifact with bytes appended after the last tensor (200 of 200 tried).")
COMMANDS = {"infer": ["infer", "--artifact", "{P}", "--ids", "101,5,102"],
            "info": ["info", "--artifact", "{P}"],
            "report": ["report", "--model", "{P}", "--arrays", "2x2x8"]}


def _snapshot(root) -> dict:
    out = {}
    for folder, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(folder, n)
            out[os.path.relpath(p, root)] = os.path.getsize(p) if os.path.isfile(p) else None
    return out


def _call(argv: list[str]) -> tuple[int | str, str]:
    """main(argv) with stdout and stderr captured; an escaping exception is reported as its type."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except BaseException as e:           # what a user would see as a traceback
            status = f"uncaught {type(e).__name__}"
    return status, err.getvalue()


def bad_inputs(files: dict) -> tuple[int, list[str]]:
    """Run the BAD_INPUTS table; return (handled, [ids of the others with what happened])."""
    handled, failed = 0, []
    for ident, argv in BAD_INPUTS:
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "existing_folder"))
            names = dict(files, T=tmp, D=os.path.join(tmp, "existing_folder"))
            args = [a.format(**names) if "{" in a else a for a in argv]
            before = _snapshot(tmp), _snapshot(os.path.dirname(files["A"]))
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                status, err = _call(args)
            finally:
                os.chdir(cwd)
            after = _snapshot(tmp), _snapshot(os.path.dirname(files["A"]))
        lines = err.splitlines()
        ok = (status == 2 and len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err
              and after == before)
        handled += ok
        if not ok:
            failed.append(f"{ident}: status {status}, {len(lines)} stderr lines, wrote files: {after != before}")
    return handled, failed


def loader_corruptions(data: bytes, seed: int, count: int, folder: str) -> tuple[int, collections.Counter, list]:
    path = os.path.join(folder, "corrupt.safetensors")
    handled, kinds, failed = 0, collections.Counter(), []
    for i, kind, blob in corruptions(data, seed, count):
        kinds[kind] += 1
        with open(path, "wb") as f:
            f.write(blob)
        try:
            load_artifact(path)
            failed.append(f"{i} ({kind}): accepted")
        except ArtifactError as e:
            if str(e).startswith(f"{path}: ") and "\n" not in str(e):
                handled += 1
            else:
                failed.append(f"{i} ({kind}): message {str(e)[:80]!r}")
        except Exception as e:              # noqa: BLE001 - counting what escapes is the point
            failed.append(f"{i} ({kind}): {type(e).__name__}")
    return handled, kinds, failed


def command_corruptions(data: bytes, seed: int, per_command: int, folder: str) -> tuple[int, int, list]:
    path = os.path.join(folder, "corrupt.safetensors")
    handled, tried, failed = 0, 0, []
    for name, argv in COMMANDS.items():
        for i, kind, blob in corruptions(data, seed, per_command):
            with open(path, "wb") as f:
                f.write(blob)
            status, err = _call([a.replace("{P}", path) for a in argv])
            tried += 1
            if status == 2 and len(err.splitlines()) == 1 and path in err:
                handled += 1
            else:
                failed.append(f"{name} {i} ({kind}): status {status}")
    return handled, tried, failed


def run(seed: int, count: int, per_command: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        art = os.path.join(d, "tiny.safetensors")
        save_artifact(random_artifact("tiny", seed=1, act_bits=1), art)
        span = os.path.join(d, "span.safetensors")      # {S}: the rows of `run` with a span (SQuAD) artifact
        save_artifact(random_artifact("tiny", seed=0, head="span"), span)
        data = Path(art).read_bytes()
        corrupt = bytearray(data)
        corrupt[-100] ^= 0x10
        Path(d, "corrupt.safetensors").write_bytes(bytes(corrupt))
        Path(d, "notes.txt").write_text("not an artifact, not JSON\n")
        Path(d, "list.json").write_text("[1, 2, 3]\n")
        files = {"A": art, "S": span, "C": os.path.join(d, "corrupt.safetensors"),
                 "F": os.path.join(d, "notes.txt"), "J": os.path.join(d, "list.json")}
        t0 = time.perf_counter()
        bad_ok, bad_failed = bad_inputs(files)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            load_ok, kinds, load_failed = loader_corruptions(data, seed, count, work)
            t2 = time.perf_counter()
            cmd_ok, cmd_tried, cmd_failed = command_corruptions(data, seed + 1, per_command, work)
        t3 = time.perf_counter()
    commands = sorted({ident.split("/")[0] for ident, _ in BAD_INPUTS} - {"top"})
    return {"bad_inputs": len(BAD_INPUTS), "bad_handled": bad_ok, "bad_failed": bad_failed, "commands": commands,
            "corruptions": count, "corruptions_handled": load_ok, "kinds": dict(kinds), "loader_failed": load_failed,
            "command_tried": cmd_tried, "command_handled": cmd_ok, "command_failed": cmd_failed,
            "seed": seed, "times_s": [round(t1 - t0, 1), round(t2 - t1, 1), round(t3 - t2, 1)]}


def section(r: dict, argv: list[str] | None) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items())
    failed = r["bad_failed"] + r["loader_failed"] + r["command_failed"]
    return "\n".join([
        SECTION,
        "",
        f"Command: `{results_md.command_line('bench/reliability.py', argv)}` "
        f"({datetime.date.today().isoformat()}; {results_md.machine()}).",
        "",
        "| check | tried | handled | handled means |",
        "|---|---|---|---|",
        f"| bad CLI inputs ({len(r['commands'])} commands: {', '.join(r['commands'])}; and the top level) | {r['bad_inputs']} "
        f"| {r['bad_handled']} | exit 2, one stderr line, no traceback, no file written |",
        f"| artifact corruptions through the loader (seed {r['seed']}: {kinds}) | {r['corruptions']} "
        f"| {r['corruptions_handled']} | `ArtifactError` naming the file; never accepted, never another exception |",
        f"| corruptions through `infer`, `info`, `report --model` | {r['command_tried']} | {r['command_handled']} "
        f"| exit 2, one stderr line naming the file |",
        "",
        BEFORE,
        "",
        "The bad-input table is `BAD_INPUTS` in tests/test_cli_bad_input.py and the corruption generator "
        "tests/artifact_corruptions.py; tests/test_cli_bad_input.py and tests/test_artifact_fuzz.py assert the same "
        "on every `make test`. Interrupts (Ctrl-C / SIGTERM during `simulate`: no child process left, exit 130 / 143, "
        "one line) are tests/test_cli_interrupt.py. Not covered here: `eval --integer` with a corrupted artifact "
        "(it needs a trained run folder)."
        + ("" if not failed else "\n\nNot handled:\n" + "\n".join(f"- {f}" for f in failed[:20])),
        "",
    ])


def main_(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=20261129)
    p.add_argument("--corruptions", type=int, default=1200, help="corruptions through the loader (default 1200)")
    p.add_argument("--per-command", type=int, default=24, help="corruptions through each command (default 24)")
    p.add_argument("--write-results", metavar="RESULTS.md", help="write the Reliability section into this file")
    args = p.parse_args(argv)
    r = run(args.seed, args.corruptions, args.per_command)
    print(f"bad inputs: {r['bad_handled']}/{r['bad_inputs']} handled; loader corruptions: "
          f"{r['corruptions_handled']}/{r['corruptions']} ({r['kinds']}); through commands: "
          f"{r['command_handled']}/{r['command_tried']}; seconds {r['times_s']}")
    for f in r["bad_failed"] + r["loader_failed"] + r["command_failed"]:
        print("  not handled:", f)
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, section(r, argv))
        print(f"wrote {SECTION!r} to {args.write_results}")
    failed = r["bad_failed"] or r["loader_failed"] or r["command_failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main_())
