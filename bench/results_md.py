"""Shared by the benchmarks: describe the machine and write one section of docs/RESULTS.md."""
from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from pathlib import Path

HEADER = "# Results\n\nEvery figure here is recorded with the command that produced it and the machine it ran on.\n"


def cpu_model() -> str:
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        return m.group(1).strip() if m else platform.processor() or "unknown CPU"
    except OSError:
        return platform.processor() or "unknown CPU"


def machine(*extras: str) -> str:
    """'CPU ..., N cores, Python x.y.z' followed by the given tool versions."""
    return ", ".join([f"CPU {cpu_model()}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}", *extras])


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that ran this benchmark, as a user would type it from the repository root."""
    exe = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else "python"
    return shlex.join([exe, script, *(sys.argv[1:] if argv is None else argv)])


def write_section(path: str | Path, title: str, text: str) -> None:
    """Create or replace the section headed `title` in `path` (re-read just before writing), keeping the rest."""
    path = Path(path)
    lines = (path.read_text() if path.exists() else HEADER).splitlines()
    if title in lines:
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"#{1,2} ", lines[i])), len(lines))
        new = lines[:start] + text.rstrip("\n").splitlines() + [""] + lines[end:]
    else:
        new = lines + [""] + text.rstrip("\n").splitlines()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(new).rstrip("\n") + "\n")
