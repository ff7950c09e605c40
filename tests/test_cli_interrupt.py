"""Ctrl-C and SIGTERM during `bitaccel simulate` stop every child process and exit with one line.

The command runs in its own session (as a shell job would); the test records every
descendant process (from /proc) while the simulator runs, sends SIGINT to the command's
process group (what Ctrl-C does) or SIGTERM to the command, and checks the exit status
(130 / 143), the last stderr line, no traceback, and that no recorded descendant is left.

Two things make these tests independent of how, and how fast, the suite runs:

* The command starts with SIGINT at its default, as a shell's foreground job does
  (`_FOREGROUND`). A test run started in the background (`make test &`, nohup, some CI
  wrappers) inherits SIGINT *ignored*, an ignored signal survives exec, and Python then
  installs no KeyboardInterrupt handler: the Ctrl-C the test sends would never arrive.
* The signal is sent only once the command has said it is waiting on its child (the
  simulator's "vvp running for N s" progress line; the tool's "waiting" marker), i.e. it is
  inside the wait that stops the child's process group on an interrupt, not a fixed time
  after the child appeared. Every wait has a bound of minutes, for a loaded machine.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog (iverilog)")

#: argv prefix: a Python that resets SIGINT to its default and execs the rest of the command line in its
#: place (same pid). A preexec_fn would do the same but is unsafe in a test process with threads.
_FOREGROUND = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"]
#: Bound of each wait (build + start of the child, the stop after the signal), seconds.
WAIT_S = 600


class _Lines:
    """The lines of a text pipe, read by a thread, so a test can wait for one with a bound."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def text(self, timeout: float = 60) -> str:
        """Everything read; waits (up to `timeout`) for the pipe to close first."""
        self._thread.join(timeout)
        return "\n".join(self.lines)


def _ignores_sigint(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        ignored = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(ignored >> (signal.SIGINT - 1) & 1)


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
    cmd = _FOREGROUND + ["-m", "bitaccel.cli", "simulate", "--unit", "threshold_unit", "--sim", "icarus",
                         "--array", "2x2x8", "--workload", "rows=60000", "--work-dir", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    seen: set[int] = set()
    try:
        # until the command reports the running simulator: it is then inside the runner's wait, which
        # stops the simulator's process group on an interrupt (sim.runner, every PROGRESS_EVERY_S)
        deadline = time.monotonic() + WAIT_S
        while (time.monotonic() < deadline and proc.poll() is None
               and not any("vvp running for" in m for m in err.lines)):
            seen |= _descendants(proc.pid)
            time.sleep(0.2)
        assert proc.poll() is None, (proc.returncode, err.text())
        assert any("vvp running for" in m for m in err.lines), f"no progress in {WAIT_S} s: {err.lines}"
        seen |= _descendants(proc.pid)
        assert any(_comm(p) == "vvp" for p in seen), "the simulator never started"
        assert not _ignores_sigint(proc.pid)
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)      # Ctrl-C: the terminal signals the foreground group
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    survivors = [(p, _comm(p)) for p in seen if _alive(p)]
    for p, _ in survivors:                        # clean up before failing
        os.kill(p, signal.SIGKILL)
    out.text()
    err = err.text()
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
import subprocess
from bitaccel.hw.toolchain import Tool
_communicate = subprocess.Popen.communicate
def communicate(self, *args, **kwargs):      # Tool.run waits here, inside its interrupt handling
    print("waiting", flush=True)
    return _communicate(self, *args, **kwargs)
subprocess.Popen.communicate = communicate
Tool("sh", ("sh", "-c")).run(["sleep 300 & sleep 300 & wait"])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_tool_run_stops_its_process_group(sig):
    """hw.toolchain.Tool.run (lint, yosys): an interrupt of the caller stops the tool and what it started."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import signal, sys\n"
            "def term(*a): raise KeyboardInterrupt\n"
            "signal.signal(signal.SIGTERM, term)\n" + _TOOL_SCRIPT)
    proc = subprocess.Popen(_FOREGROUND + ["-c", code], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and proc.poll() is None and (
                "waiting" not in out.lines or sum(_comm(p) == "sleep" for p in seen) < 2):
            seen |= _descendants(proc.pid)
            time.sleep(0.1)
        assert proc.poll() is None, (proc.returncode, err.text())
        assert "waiting" in out.lines, f"Tool.run did not start waiting in {WAIT_S} s: {out.lines}"
        assert sum(_comm(p) == "sleep" for p in seen) == 2, [(p, _comm(p)) for p in seen]
        assert not _ignores_sigint(proc.pid)
        os.kill(proc.pid, sig)                        # the caller only, as `kill PID` or a supervisor would
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    survivors = [(p, _comm(p)) for p in seen if _alive(p)]
    for p, _ in survivors:
        os.kill(p, signal.SIGKILL)
    assert survivors == []
    err = err.text()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, (proc.returncode, err)
