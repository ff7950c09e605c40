"""cocotb on the generated Verilog: every unit, on Icarus Verilog and Verilator, bit-exact against golden/.

Each `test_unit` builds one unit for one array configuration with one simulator
(sim.runner; builds are cached under ``sim_build/``, or ``$BITACCEL_SIM_BUILD``) and runs
its cocotb bench: a randomized / edge-case verification test with random input gaps and
output back-pressure, then the timed operation. It asserts that every cocotb test passed,
that every compared element equals golden (and that elements were compared), that the
measured cycles of the timed operation equal the unit's own cycle formula, and that both
simulators measured the same cycles for every operation (the same seed drives both).

A missing or too-old simulator skips with the message naming what to install; nothing
passes silently. Configurations: 2x3x16 (non-square, K = 40 not a multiple of the 16
lanes) and 4x4x32 (square, K = 40 not a multiple of 32 either), with small limits
(max_seq 32, max_hidden 64, max_ffn 128) so the Verilog stays small.

Waveforms: ``BITACCEL_WAVES=1 pytest -m sim ...`` writes ``<unit>.fst`` into each build dir.
"""
from __future__ import annotations

import gc
import json
import os
import stat
import zlib
from pathlib import Path

import pytest

from bitaccel.hw.params import HwParams
from bitaccel.sim import measure, runner
from bitaccel.sim.runner import SIMULATORS, SimulatorUnavailable

pytestmark = pytest.mark.sim

LIMITS = dict(max_seq=32, max_hidden=64, max_ffn=128, max_head_dim=16, max_exp_lut=64)
CONFIGS = {
    "2x3x16": HwParams(rows=2, cols=3, lanes=16, **LIMITS),     # non-square; 16 lanes do not divide K = 40
    "4x4x32": HwParams(rows=4, cols=4, lanes=32, **LIMITS),     # square; 32 lanes do not divide K = 40 either
}
UNITS = [u for u in runner.UNIT_BENCHES if u != "accelerator"]     # the top level: tests/test_sim_accelerator.py
#: Small workloads (the timed operation; the verification test has its own cases).
WORKLOADS = {
    "mac_array": {"m": 5, "n": 7, "k": 40, "a_bits": 2, "a_signed": 1, "b_bits": 1, "b_signed": 1},
    "threshold_unit": {"rows": 4, "channels": 37},
    "requant_unit": {"rows": 4, "channels": 37},
    "softmax_unit": {"rows": 3, "seq_len": 21, "mode": "multibit", "random_rows": 12},
    "layernorm_unit": {"rows": 3, "hidden": 48, "random_rows": 10},
}
#: cocotb tests every bench defines (all must run and pass).
BENCH_TESTS = {"verify_random_and_edges", "timed_operation"}
_RESULTS: dict = {}


@pytest.fixture(scope="session")
def work_dir() -> Path:
    return Path(os.environ.get("BITACCEL_SIM_BUILD", Path(__file__).resolve().parent.parent / "sim_build"))


def _need(sim: str) -> None:
    try:
        runner.check_simulator(sim)
    except SimulatorUnavailable as e:
        pytest.skip(f"{sim} unavailable: {e}")


def _seed(unit: str, config: str) -> int:
    """The same seed for both simulators (so their operations can be compared)."""
    return zlib.crc32(f"{unit}-{config}".encode()) % 100_000


def _failures(r: dict) -> str:
    lines = [f"{t['name']}: {t['message']}" for t in r["tests"] if not t["passed"]]
    return "; ".join(lines) + f" (log: {r['sim_log']})"


# ----------------------------------------------------------------------------- every unit, both simulators
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("sim", SIMULATORS)
def test_unit(sim, unit, config, work_dir):
    _need(sim)
    seed = _seed(unit, config)
    print(f"seed={seed}")
    r = runner.run(unit, sim, CONFIGS[config], workload=WORKLOADS[unit], seed=seed, work_dir=work_dir, verify=True)
    print(json.dumps({k: r[k] for k in ("cycles", "model_cycles", "beats", "compared", "run_s")}),
          "build", r["build"]["build_s"], "s")
    assert r["passed"], _failures(r)
    assert {t["name"] for t in r["tests"] if not t["skipped"]} == BENCH_TESTS
    assert r["compared"] > 0 and r["mismatches"] == 0 and r["bit_exact"], r["first_mismatch"]
    assert r["cycles"] == r["model_cycles"], f"measured {r['cycles']} cycles, the unit formula {r['model_cycles']}"
    assert len(r["ops"]) >= 3 and any(op["stalls"] for op in r["ops"])
    off = [(op["name"], op["cycles"], op["model_cycles"]) for op in r["ops"]
           if op["model_cycles"] is not None and op["cycles"] != op["model_cycles"]]
    assert not off, f"operations whose cycles differ from the unit's formula: {off}"
    _RESULTS[(sim, unit, config)] = r
    other = _RESULTS.get(("icarus" if sim == "verilator" else "verilator", unit, config))
    if other is not None:            # same seed, same workload: both simulators must agree cycle for cycle
        ours = [(op["name"], op["cycles"]) for op in r["ops"]]
        theirs = [(op["name"], op["cycles"]) for op in other["ops"]]
        assert ours == theirs, f"{sim} and the other simulator measured different cycles: {ours} vs {theirs}"
        assert r["compared"] == other["compared"]


# ----------------------------------------------------------------------------- measurement API
def test_run_unit_timed_only(work_dir):
    """run_unit: short unit names, timed operation only, the documented keys, results.json left in the build dir."""
    _need("icarus")
    p = CONFIGS["2x3x16"]
    r = measure.run_unit("threshold_unit", "icarus", p, {"rows": 2, "channels": 7}, seed=5, work_dir=work_dir)
    for key in ("unit", "config", "sim", "seed", "cycles", "beats", "out_beats", "model_cycles", "bit_exact",
                "compared", "mismatches", "first_mismatch", "ops", "passed", "tests", "build", "run_s"):
        assert key in r, key
    assert (r["unit"], r["sim"], r["seed"], r["config"]) == ("threshold_unit", "icarus", 5, runner.config_name(p))
    assert r["passed"] and r["bit_exact"] and r["compared"] == 2 * 7 + 2 * 3       # bits + last flags
    assert r["beats"] == 2 * 3 and r["cycles"] == r["model_cycles"] == 6 + 2          # beats + latency
    assert [op["name"] for op in r["ops"]] == ["timed"]
    skipped = {t["name"]: t["skipped"] for t in r["tests"]}
    assert skipped == {"verify_random_and_edges": True, "timed_operation": False}
    saved = json.loads((Path(r["build"]["build_dir"]) / "results.json").read_text())
    assert saved["cycles"] == r["cycles"]
    with pytest.raises(ValueError, match="unknown unit"):
        measure.run_unit("nope", "icarus", p)


def test_unknown_workload_option_fails_the_run(work_dir):
    _need("icarus")
    r = measure.run_unit("requant_unit", "icarus", CONFIGS["2x3x16"], {"rowz": 3}, seed=1, work_dir=work_dir)
    assert not r["passed"]
    assert "unknown workload options" in _failures(r)


def test_hung_dut_fails_instead_of_hanging(work_dir):
    """An output that is never taken (back-pressure 1.0): the operation's watchdog fails the test."""
    _need("icarus")
    r = runner.run("threshold_unit", "icarus", CONFIGS["2x3x16"], workload={"backpressure": 1.0}, seed=2,
                   work_dir=work_dir, verify=True, timeout_s=120)
    assert not r["passed"]
    failed = {t["name"]: t["message"] for t in r["tests"] if not t["passed"]}
    assert list(failed) == ["verify_random_and_edges"] and "hung DUT" in failed["verify_random_and_edges"]
    assert r["cycles"] == r["model_cycles"]         # the timed operation after it still ran, reset in between


def test_wall_clock_limit_kills_the_simulator(work_dir):
    """A run past its wall-clock limit is killed and reported (SimulationTimeout), not waited for."""
    _need("icarus")
    with pytest.raises(runner.SimulationTimeout, match="wall-clock limit"):
        runner.run("threshold_unit", "icarus", CONFIGS["2x3x16"], workload={"rows": 3000, "channels": 128}, seed=4,
                   work_dir=work_dir, verify=False, timeout_s=2)


def test_icarus_waves(work_dir, monkeypatch):
    """BITACCEL_WAVES=1: an FST waveform in the build dir (Icarus, through our Verilog-2005 dumper)."""
    _need("icarus")
    monkeypatch.setenv("BITACCEL_WAVES", "1")
    r = measure.run_unit("threshold_unit", "icarus", CONFIGS["2x3x16"], {"rows": 1, "channels": 5}, seed=3,
                         work_dir=work_dir)
    assert r["passed"] and r["waves_file"] and r["waves_file"].endswith("threshold_unit.fst")
    assert Path(r["waves_file"]).stat().st_size > 100
    monkeypatch.delenv("BITACCEL_WAVES")
    r = measure.run_unit("threshold_unit", "icarus", CONFIGS["2x3x16"], {"rows": 1, "channels": 5}, seed=3,
                         work_dir=work_dir)
    assert r["passed"] and r["waves_file"] is None and r["build"]["rebuilt"]


# ----------------------------------------------------------------------------- tool checks (no simulator runs)
def _fake_tool(tmp_path: Path, name: str, output: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_missing_or_old_icarus_names_the_package(tmp_path, monkeypatch):
    import bitaccel.hw.toolchain as tc

    def missing():
        raise tc.ToolError("iverilog not found")

    monkeypatch.setattr(tc, "find_iverilog", missing)
    with pytest.raises(SimulatorUnavailable, match="Debian package `iverilog`"):
        runner.check_simulator("icarus")
    old = _fake_tool(tmp_path, "iverilog", "Icarus Verilog version 10.3 (stable) ()")
    _fake_tool(tmp_path, "vvp", "")
    monkeypatch.setattr(tc, "find_iverilog", lambda: tc.Tool("iverilog", (old,)))
    with pytest.raises(SimulatorUnavailable, match=r"10\.3 is too old.*`iverilog`"):
        runner.check_simulator("icarus")


def test_old_or_missing_verilator_names_the_package(tmp_path, monkeypatch):
    import importlib.metadata

    import bitaccel.hw.toolchain as tc

    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "5.6.0" if name == "verilator" else real_version(name))
    if "VERILATOR_ROOT" in _verilator_env():
        with pytest.raises(SimulatorUnavailable, match=r"too old.*verilator==5\.48\.0"):
            runner.check_simulator("verilator")
    system = _fake_tool(tmp_path, "verilator", "Verilator 5.006 2023-01-22 rev v5.006")
    monkeypatch.setattr(tc, "find_verilator", lambda: tc.Tool("verilator", (system,)))
    with pytest.raises(SimulatorUnavailable, match=r"5\.006.*too old.*verilator==5\.48\.0"):
        runner.check_simulator("verilator")
    unknown = _fake_tool(tmp_path, "verilator2", "Verilator rev vUNKNOWN")       # no number: cannot check, accepted
    monkeypatch.setattr(tc, "find_verilator", lambda: tc.Tool("verilator", (unknown,)))
    assert runner.check_simulator("verilator").version is None

    def missing():
        raise tc.ToolError("verilator not found")

    monkeypatch.setattr(tc, "find_verilator", missing)
    with pytest.raises(SimulatorUnavailable, match=r"verilator==5\.48\.0"):
        runner.check_simulator("verilator")
    with pytest.raises(ValueError, match="simulator must be one of"):
        runner.check_simulator("questa")


def _verilator_env() -> dict:
    import bitaccel.hw.toolchain as tc

    try:
        return tc.find_verilator().env
    except tc.ToolError:
        return {}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # units built for their layouts only
def test_codec_and_scoreboard_without_a_simulator():
    """The packing helper agrees with Amaranth's layouts; the scoreboard reports the first mismatch (X too)."""
    from bitaccel.hw.generate import UNITS
    from bitaccel.sim.bench.harness import Codec, Scoreboard

    for factory in UNITS.values():
        unit = factory(CONFIGS["2x3x16"])
        for path, member in unit.signature.members.flatten():
            if path[-1] == "payload":
                Codec(member.shape)                  # self-checks against Layout.const(...).as_bits()
    codec = Codec(UNITS["mac_array"](CONFIGS["2x3x16"]).results_layout)
    del unit
    gc.collect()
    value = {"acc": [-1, 2, -(1 << (codec.leaves[0][2] - 1))], "row": 1, "last": 1}     # one drain beat (C = 3)
    bits = codec.pack(value)
    assert codec.unpack(bits) == value
    text = bin(bits)[2:].rjust(codec.width, "0")
    assert codec.unpack("X" + text[1:])["last"] is None and codec.unpack("X" + text[1:])["acc"][0] == -1
    sb = Scoreboard("t")
    assert sb.compare("a", [[1, 2], [3, 4]], [[1, 2], [3, 4]]) == 0
    assert sb.compare("b", [5, 6, 7], [5, None, 8]) == 2
    assert (sb.compared, sb.mismatches) == (7, 2)
    with pytest.raises(AssertionError, match=r"2 of 7 .* first mismatch b\[1\]: expected 6, got X"):
        sb.assert_ok()
