"""Every command x its bad inputs: exit status 2, one line on stderr, no traceback, nothing written.

The table `BAD_INPUTS` is also counted by bench/reliability.py for docs/RESULTS.md. Each
row is ``(id, argv)``; in argv, ``{T}`` is a fresh temporary folder (the test's working
directory), ``{A}`` a valid tiny artifact, ``{S}`` a valid tiny span (SQuAD) artifact,
``{C}`` a corrupted copy of {A} (one flipped byte in a tensor), ``{F}`` a plain file and ``{D}`` an existing folder. After the command,
the temporary folder must hold exactly what it held before.
"""
from __future__ import annotations

import os

import pytest

from bitaccel.cli import main

#: (id, argv) of bad inputs; every one must exit 2 with one line and write nothing.
BAD_INPUTS = [
    # random-artifact
    ("random-artifact/config", ["random-artifact", "--config", "huge", "--out", "{T}/a.safetensors"]),
    ("random-artifact/act-bits", ["random-artifact", "--act-bits", "3", "--out", "{T}/a.safetensors"]),
    ("random-artifact/seed-negative", ["random-artifact", "--seed", "-1", "--out", "{T}/a.safetensors"]),
    ("random-artifact/seed-not-int", ["random-artifact", "--seed", "x", "--out", "{T}/a.safetensors"]),
    ("random-artifact/out-is-folder", ["random-artifact", "--out", "{D}"]),
    ("random-artifact/out-under-file", ["random-artifact", "--out", "{F}/a.safetensors"]),
    ("random-artifact/out-unwritable", ["random-artifact", "--out", "/proc/bitaccel/a.safetensors"]),
    ("random-artifact/no-out", ["random-artifact"]),
    ("random-artifact/head", ["random-artifact", "--head", "pointer", "--out", "{T}/a.safetensors"]),
    # infer
    ("infer/ids-overflow", ["infer", "--artifact", "{A}", "--ids", "101,99999999999999999999999,102"]),
    ("infer/ids-negative", ["infer", "--artifact", "{A}", "--ids", "101,-5,102"]),
    ("infer/ids-out-of-vocab", ["infer", "--artifact", "{A}", "--ids", "101,1000,102"]),
    ("infer/ids-not-int", ["infer", "--artifact", "{A}", "--ids", "101,x"]),
    ("infer/ids-float", ["infer", "--artifact", "{A}", "--ids", "101,2.5"]),
    ("infer/ids-empty", ["infer", "--artifact", "{A}", "--ids", ""]),
    ("infer/ids-too-long", ["infer", "--artifact", "{A}", "--ids", ",".join(["7"] * 65)]),
    ("infer/mask-not-binary", ["infer", "--artifact", "{A}", "--ids", "1,2,3", "--mask", "1,2,1"]),
    ("infer/mask-negative", ["infer", "--artifact", "{A}", "--ids", "1,2,3", "--mask", "1,-1,1"]),
    ("infer/mask-length", ["infer", "--artifact", "{A}", "--ids", "1,2,3", "--mask", "1,1"]),
    ("infer/mask-all-zero", ["infer", "--artifact", "{A}", "--ids", "1,2", "--mask", "0,0"]),
    ("infer/path", ["infer", "--artifact", "{A}", "--ids", "1,2", "--path", "gpu"]),
    ("infer/artifact-missing", ["infer", "--artifact", "{T}/none.safetensors", "--ids", "1"]),
    ("infer/artifact-folder", ["infer", "--artifact", "{D}", "--ids", "1"]),
    ("infer/artifact-corrupt", ["infer", "--artifact", "{C}", "--ids", "1"]),
    ("infer/artifact-not-artifact", ["infer", "--artifact", "{F}", "--ids", "1"]),
    # info
    ("info/artifact-missing", ["info", "--artifact", "{T}/none.safetensors"]),
    ("info/artifact-corrupt", ["info", "--artifact", "{C}"]),
    ("info/artifact-not-artifact", ["info", "--artifact", "{F}"]),
    ("info/no-artifact", ["info"]),
    # demo
    ("demo/artifact-missing", ["demo", "--artifact", "{T}/none.safetensors"]),
    ("demo/artifact-corrupt", ["demo", "--artifact", "{C}"]),
    ("demo/artifact-not-artifact", ["demo", "--artifact", "{F}"]),
    ("demo/example-out-of-range", ["demo", "--artifact", "{A}", "--example", "999999"]),
    ("demo/example-negative", ["demo", "--artifact", "{A}", "--example", "-1"]),
    ("demo/array", ["demo", "--artifact", "{A}", "--array", "8x8"]),
    ("demo/sim", ["demo", "--artifact", "{A}", "--sim", "modelsim"]),
    ("demo/clock-negative", ["demo", "--artifact", "{A}", "--clock-mhz", "-5"]),
    # generate
    ("generate/rows-zero", ["generate", "--rows", "0", "--cols", "2", "--lanes", "8", "--out", "{T}/g"]),
    ("generate/cols-negative", ["generate", "--rows", "2", "--cols", "-2", "--lanes", "8", "--out", "{T}/g"]),
    ("generate/lanes-not-pow2", ["generate", "--rows", "2", "--cols", "2", "--lanes", "12", "--out", "{T}/g"]),
    ("generate/lanes-not-int", ["generate", "--rows", "2", "--cols", "2", "--lanes", "4x4", "--out", "{T}/g"]),
    ("generate/max-seq-zero", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--max-seq", "0",
                               "--out", "{T}/g"]),
    ("generate/max-act-bits", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--max-act-bits", "3",
                               "--out", "{T}/g"]),
    ("generate/unit-unknown", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", "fpu",
                               "--out", "{T}/g"]),
    ("generate/unit-twice", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8",
                             "--units", "softmax_unit,softmax_unit", "--out", "{T}/g"]),
    ("generate/units-empty", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", ",",
                              "--out", "{T}/g"]),
    ("generate/out-is-file", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", "threshold_unit",
                              "--out", "{F}"]),
    ("generate/out-under-file", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", "threshold_unit",
                                 "--out", "{F}/g"]),
    ("generate/out-unwritable", ["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", "threshold_unit",
                                 "--out", "/proc/bitaccel/g"]),
    ("generate/no-rows", ["generate", "--cols", "2", "--lanes", "8", "--out", "{T}/g"]),
    # synth
    ("synth/target", ["synth", "--rows", "2", "--cols", "2", "--lanes", "8", "--target", "asic"]),
    ("synth/unit", ["synth", "--rows", "2", "--cols", "2", "--lanes", "8", "--target", "xilinx", "--unit", "fpu"]),
    ("synth/pnr-not-ecp5", ["synth", "--rows", "2", "--cols", "2", "--lanes", "8", "--target", "xilinx", "--pnr"]),
    ("synth/rows-zero", ["synth", "--rows", "0", "--cols", "2", "--lanes", "8", "--target", "xilinx"]),
    ("synth/keep-is-file", ["synth", "--rows", "2", "--cols", "2", "--lanes", "8", "--target", "xilinx",
                            "--unit", "threshold_unit", "--keep", "{F}"]),
    # simulate
    ("simulate/unit", ["simulate", "--unit", "fpu", "--array", "2x2x8"]),
    ("simulate/sim", ["simulate", "--unit", "threshold_unit", "--sim", "modelsim", "--array", "2x2x8"]),
    ("simulate/array-2d", ["simulate", "--unit", "threshold_unit", "--array", "4x4"]),
    ("simulate/array-zero", ["simulate", "--unit", "threshold_unit", "--array", "0x4x8"]),
    ("simulate/array-lanes", ["simulate", "--unit", "threshold_unit", "--array", "2x2x12"]),
    ("simulate/workload-signed", ["simulate", "--unit", "mac_array", "--array", "2x2x8", "--workload", "a_signed=5"]),
    ("simulate/workload-key", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--workload", "nokey=1"]),
    ("simulate/workload-negative", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--workload", "rows=-1"]),
    ("simulate/workload-huge", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8",
                                "--workload", "rows=99999999999999999999999"]),
    ("simulate/workload-not-kv", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--workload", "rows"]),
    ("simulate/workload-not-json", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--workload", "{F}"]),
    ("simulate/workload-json-list", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--workload", "{J}"]),
    ("simulate/workload-missing-file", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8",
                                        "--workload", "{T}/w.json"]),
    ("simulate/workload-mode", ["simulate", "--unit", "softmax_unit", "--array", "2x2x8", "--workload", "mode=ternary"]),
    ("simulate/layernorm-framing", ["simulate", "--unit", "layernorm_unit", "--array", "2x3x8", "--workload",
                                    "hidden=64"]),
    ("simulate/seed-negative", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--seed", "-1"]),
    ("simulate/work-dir-is-file", ["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--work-dir", "{F}"]),
    # report
    ("report/model-unknown", ["report", "--model", "gpt5"]),
    ("report/model-corrupt", ["report", "--model", "{C}", "--arrays", "2x2x8"]),
    ("report/model-not-artifact", ["report", "--model", "{F}", "--arrays", "2x2x8"]),
    ("report/arrays-2d", ["report", "--model", "tiny", "--arrays", "4x4"]),
    ("report/arrays-empty", ["report", "--model", "tiny", "--arrays", ""]),
    ("report/arrays-twice", ["report", "--model", "tiny", "--arrays", "2x2x8,2x2x8"]),
    ("report/arrays-lanes", ["report", "--model", "tiny", "--arrays", "2x2x7"]),
    ("report/seq-zero", ["report", "--model", "tiny", "--seq", "0"]),
    ("report/seq-negative", ["report", "--model", "tiny", "--seq", "-5"]),
    ("report/seq-too-long", ["report", "--model", "tiny", "--seq", "65"]),
    ("report/clock-zero", ["report", "--model", "tiny", "--clock-mhz", "0"]),
    ("report/clock-nan", ["report", "--model", "tiny", "--clock-mhz", "nan"]),
    ("report/act-bits", ["report", "--model", "tiny", "--act-bits", "3"]),
    ("report/sram-negative", ["report", "--model", "tiny", "--sram-kib", "-1"]),
    ("report/synth-target", ["report", "--model", "tiny", "--synth", "--synth-target", "asic"]),
    ("report/synth-units", ["report", "--model", "tiny", "--synth", "--synth-units", "fpu"]),
    ("report/plot-under-file", ["report", "--model", "tiny", "--arrays", "2x2x8", "--plot", "{F}/r.png"]),
    ("report/plot-is-folder", ["report", "--model", "tiny", "--arrays", "2x2x8", "--plot", "{D}"]),
    ("report/plot-unwritable", ["report", "--model", "tiny", "--arrays", "2x2x8", "--plot", "/proc/bitaccel/r.png"]),
    # run (every case fails before a build)
    ("run/artifact-missing", ["run", "--artifact", "{T}/none.safetensors", "--ids", "1,2", "--array", "2x3x16"]),
    ("run/artifact-corrupt", ["run", "--artifact", "{C}", "--ids", "1,2", "--array", "2x3x16"]),
    ("run/array-2d", ["run", "--artifact", "{A}", "--ids", "1,2", "--array", "4x4"]),
    ("run/array-lanes", ["run", "--artifact", "{A}", "--ids", "1,2", "--array", "2x2x12"]),
    ("run/text-and-ids", ["run", "--artifact", "{A}", "--ids", "1,2", "--text", "hi", "--array", "2x3x16"]),
    ("run/no-input", ["run", "--artifact", "{A}", "--array", "2x3x16"]),
    ("run/text-no-tokenizer", ["run", "--artifact", "{A}", "--text", "a fine film", "--array", "2x3x16"]),
    ("run/ids-too-long", ["run", "--artifact", "{A}", "--ids", ",".join(["7"] * 65), "--array", "2x3x16"]),
    ("run/ids-out-of-vocab", ["run", "--artifact", "{A}", "--ids", "1,1000", "--array", "2x3x16"]),
    ("run/ids-overflow", ["run", "--artifact", "{A}", "--ids", "1,99999999999999999999999", "--array", "2x3x16"]),
    ("run/mask-not-binary", ["run", "--artifact", "{A}", "--ids", "1,2", "--mask", "1,2", "--array", "2x3x16"]),
    ("run/mask-length", ["run", "--artifact", "{A}", "--ids", "1,2,3", "--mask", "1,1", "--array", "2x3x16"]),
    ("run/sim", ["run", "--artifact", "{A}", "--ids", "1,2", "--array", "2x3x16", "--sim", "modelsim"]),
    ("run/clock-zero", ["run", "--artifact", "{A}", "--ids", "1,2", "--array", "2x3x16", "--clock-mhz", "0"]),
    ("run/span-with-text", ["run", "--artifact", "{S}", "--text", "a fine film", "--array", "2x3x16"]),
    ("run/span-with-ids", ["run", "--artifact", "{S}", "--ids", "1,2", "--array", "2x3x16"]),
    ("run/span-no-context", ["run", "--artifact", "{S}", "--question", "who?", "--array", "2x3x16"]),
    ("run/span-no-question", ["run", "--artifact", "{S}", "--context", "a b c", "--array", "2x3x16"]),
    ("run/span-mask", ["run", "--artifact", "{S}", "--question", "who?", "--context", "a b", "--mask", "1,1",
                       "--array", "2x3x16"]),
    ("run/span-answer-length", ["run", "--artifact", "{S}", "--question", "who?", "--context", "a b",
                                "--max-answer-length", "0", "--array", "2x3x16"]),
    ("run/span-no-tokenizer", ["run", "--artifact", "{S}", "--question", "who?", "--context", "a b",
                               "--array", "2x3x16"]),
    ("run/classifier-with-question", ["run", "--artifact", "{A}", "--question", "who?", "--context", "a b",
                                      "--array", "2x3x16"]),
    ("run/classifier-context-only", ["run", "--artifact", "{A}", "--context", "a b", "--array", "2x3x16"]),
    # train, eval, export (model/ checks the values; the CLI makes them one line)
    ("train/task-unknown", ["train", "--task", "nope", "--out", "{T}/run", "--max-steps", "1"]),
    ("train/out-is-file", ["train", "--task", "mr", "--out", "{F}", "--max-steps", "1"]),
    ("train/seed-negative", ["train", "--task", "mr", "--out", "{T}/run", "--seed", "-1"]),
    ("eval/run-missing", ["eval", "{T}/nope"]),
    ("eval/not-a-run", ["eval", "{D}"]),
    ("export/run-missing", ["export", "{T}/nope", "--out", "{T}/x.safetensors"]),
    # top level
    ("top/no-command", []),
    ("top/unknown-command", ["fly"]),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid tiny artifact, a tiny span artifact, a corrupted copy, a plain text file, a JSON list."""
    d = tmp_path_factory.mktemp("bad_input_files")
    art = d / "tiny.safetensors"
    assert main(["random-artifact", "--config", "tiny", "--seed", "1", "--out", str(art)]) == 0
    assert main(["random-artifact", "--config", "tiny", "--head", "span", "--out", str(d / "span.safetensors")]) == 0
    data = bytearray(art.read_bytes())
    data[-100] ^= 0x10                       # inside the last tensor's bytes: a checksum mismatch
    (d / "corrupt.safetensors").write_bytes(bytes(data))
    (d / "notes.txt").write_text("not an artifact, not JSON\n")
    (d / "list.json").write_text("[1, 2, 3]\n")
    return {"A": str(art), "S": str(d / "span.safetensors"), "C": str(d / "corrupt.safetensors"), "F": str(d / "notes.txt"), "J": str(d / "list.json")}


def _snapshot(root) -> dict:
    out = {}
    for folder, dirs, names in os.walk(root):
        for n in dirs + names:
            p = os.path.join(folder, n)
            out[os.path.relpath(p, root)] = os.path.getsize(p) if os.path.isfile(p) else None
    return out


def run_bad_input(argv: list[str], files: dict, tmp_path, capsys) -> tuple[int, str]:
    """Run `main(argv)` in a fresh working folder; return (status, stderr) and check nothing was written."""
    (tmp_path / "existing_folder").mkdir()
    names = dict(files, T=str(tmp_path), D=str(tmp_path / "existing_folder"))
    argv = [a.format(**names) if "{" in a else a for a in argv]
    cwd = os.getcwd()
    before = _snapshot(tmp_path), _snapshot(os.path.dirname(files["A"]))
    os.chdir(tmp_path)
    try:
        status = main(argv)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    after = _snapshot(tmp_path), _snapshot(os.path.dirname(files["A"]))
    assert after == before, f"files changed: {set(after[0]) ^ set(before[0])}"
    return status, err


@pytest.mark.parametrize("argv", [a for _, a in BAD_INPUTS], ids=[i for i, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(argv, files, tmp_path, capsys):
    status, err = run_bad_input(argv, files, tmp_path, capsys)
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("bitaccel") and "error:" in lines[0], err
    assert "Traceback" not in err


def test_generate_lint_without_verilator_fails_before_generating(files, tmp_path, capsys, monkeypatch):
    """A missing Verilator for --lint is reported before minutes of generation, and nothing is written."""
    from bitaccel.hw import generate as hw_generate
    from bitaccel.hw import toolchain as hw_toolchain

    def no_verilator():
        raise hw_toolchain.ToolError("verilator not found: install it")

    def must_not_run(*a, **k):
        raise AssertionError("generation ran before the lint tool was checked")

    monkeypatch.setattr(hw_toolchain, "find_verilator", no_verilator)
    monkeypatch.setattr(hw_generate, "generate", must_not_run)
    status, err = run_bad_input(["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--lint",
                                 "--out", "{T}/g"], files, tmp_path, capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "verilator not found" in err


def test_generate_out_problem_fails_before_generating(files, tmp_path, capsys, monkeypatch):
    from bitaccel.hw import generate as hw_generate

    def must_not_run(*a, **k):
        raise AssertionError("generation ran before the output folder was checked")

    monkeypatch.setattr(hw_generate, "generate_unit", must_not_run)
    status, err = run_bad_input(["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--out", "{F}/g"],
                                files, tmp_path, capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "notes.txt" in err


def test_workload_file_error_names_the_file(files, tmp_path, capsys):
    status, err = run_bad_input(["simulate", "--unit", "threshold_unit", "--array", "2x2x8", "--workload", "{F}"],
                                files, tmp_path, capsys)
    assert status == 2 and "notes.txt" in err


def test_report_plot_problem_fails_before_the_sweep(files, tmp_path, capsys, monkeypatch):
    from bitaccel.sim import commands as sim_commands

    def must_not_run(*a, **k):
        raise AssertionError("the sweep ran before the plot path was checked")

    monkeypatch.setattr(sim_commands, "report", must_not_run)
    status, err = run_bad_input(["report", "--model", "tiny", "--arrays", "2x2x8", "--plot", "{F}/r.png"],
                                files, tmp_path, capsys)
    assert status == 2 and len(err.splitlines()) == 1
