"""Ctrl-C and SIGTERM during `bitaccel simulate` stop every child process and exit with one line.

The command runs in its own session (as a shell job would); the test records every
descendant process (from /proc) while the simulator runs, sends SIGINT to the command's
process group (what Ctrl-C does) or SIGTERM to the command, and checks the exit status
(130 / 143), the last stderr line, no traceback, and that no recorded descendant is left.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog (iverilog)")


def _children() -> dict[int, list[int]]:
    """ppid -> [pid] of every live (non-zombie) process, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()      # after "pid (comm) "
        if fields[0] != "Z":
            out.setdefault(int(fields[1]), []).append(int(entry))
    return out


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.sim
@needs_icarus
@pytest.mark.parametrize("how, status, line", [("SIGINT", 130, "bitaccel: interrupted"),
                                               ("SIGTERM", 143, "bitaccel: terminated")])
def test_interrupted_simulation_leaves_no_child(how, status, line, tmp_path_factory):
    work = tmp_path_factory.getbasetemp() / "interrupt_sim_build"    # shared: the second run reuses the build
    cmd = [sys.executable, "-m", "bitaccel.cli", "simulate", "--unit", "threshold_unit", "--sim", "icarus",
           "--array", "2x2x8", "--workload", "rows=60000", "--work-dir", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _descendants(proc.pid)
            if any(_comm(p) == "vvp" for p in seen):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        assert any(_comm(p) == "vvp" for p in seen), "the simulator never started"
        time.sleep(1.0)
        seen |= _descendants(proc.pid)
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)      # Ctrl-C: the terminal signals the foreground group
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    survivors = [(p, _comm(p)) for p in seen if _alive(p)]
    for p, _ in survivors:                        # clean up before failing
        os.kill(p, signal.SIGKILL)
    assert survivors == []
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == line, err


@pytest.mark.sim
@needs_icarus
def test_long_simulation_reports_progress(tmp_path_factory, monkeypatch):
    """A build and a long run say what they do, and a tool that runs on says so every PROGRESS_EVERY_S."""
    from bitaccel.sim import runner as sim_runner
    from bitaccel.sim.commands import simulate

    monkeypatch.setattr(sim_runner, "PROGRESS_EVERY_S", 0.5)
    messages: list[str] = []
    work = tmp_path_factory.mktemp("progress_sim_build")
    r = simulate("threshold_unit", "icarus", "2x2x8", "rows=600", 0, str(work), progress=messages.append)
    assert r["bit_exact"]
    assert any(m.startswith("building threshold_unit with icarus") for m in messages), messages
    assert any(m.startswith("simulating threshold_unit on icarus") for m in messages), messages
    assert any(m.startswith("vvp running for") for m in messages), messages


_TOOL_SCRIPT = """
import sys
from bitaccel.hw.toolchain import Tool
print("ready", flush=True)
Tool("sh", ("sh", "-c")).run(["sleep 300 & sleep 300 & wait"])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_tool_run_stops_its_process_group(sig):
    """hw.toolchain.Tool.run (lint, yosys): an interrupt of the caller stops the tool and what it started."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import signal, sys\n"
            "def term(*a): raise KeyboardInterrupt\n"
            "signal.signal(signal.SIGTERM, term)\n" + _TOOL_SCRIPT)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    seen: set[int] = set()
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(_comm(p) == "sleep" for p in seen) < 2:
            seen |= _descendants(proc.pid)
            time.sleep(0.1)
        assert sum(_comm(p) == "sleep" for p in seen) == 2, [(p, _comm(p)) for p in seen]
        os.kill(proc.pid, sig)                        # the caller only, as `kill PID` or a supervisor would
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    survivors = [(p, _comm(p)) for p in seen if _alive(p)]
    for p, _ in survivors:
        os.kill(p, signal.SIGKILL)
    assert survivors == []
