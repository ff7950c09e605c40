"""CLI behaviour beyond bad input: report defaults and output types, pipes, file modes, progress."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from bitaccel.cli import main
from bitaccel.golden.config import PRESETS
from bitaccel.golden.inputs import check_inputs


def test_report_tiny_defaults_to_its_max_sequence(capsys):
    assert main(["report", "--model", "tiny", "--arrays", "2x2x8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["seq"] == PRESETS["tiny"].max_position == 64


def test_report_json_cycles_are_integers(capsys):
    assert main(["report", "--model", "tiny", "--arrays", "2x2x8,4x4x16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for a in r["arrays"]:
        assert isinstance(a["cycles"], int) and isinstance(a["ideal_cycles"], int)
        assert all(isinstance(v["cycles"], int) for v in a["cycles_by_kind"].values())
        assert all(isinstance(v, int) for v in a["unit_busy_cycles"].values())
        assert a["cycles"] >= sum(v["cycles"] for v in a["cycles_by_kind"].values()) - len(a["cycles_by_kind"])


def test_report_says_when_the_design_grows_past_the_default_limits(capsys):
    assert main(["report", "--model", "minilm", "--arrays", "8x8x64", "--seq", "200", "--json"]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert any("max_seq=200" in n for n in r["notes"])
    assert "max_seq=200" in captured.err and "default limit 128" in captured.err
    assert main(["report", "--model", "minilm", "--arrays", "8x8x64", "--seq", "128", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["notes"] == [] and captured.err == ""


def test_report_into_a_closed_pipe_exits_quietly():
    """`bitaccel report | head -1`: no 'Broken pipe' message, no traceback."""
    cmd = (f"{sys.executable} -m bitaccel.cli report --model tiny --arrays 2x2x8,4x4x16,8x8x16 "
           f"| head -c 10")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.stdout == "model tiny" and r.stderr == "", r.stderr


def test_mask_entries_must_be_0_or_1():
    cfg = PRESETS["tiny"]
    with pytest.raises(ValueError, match="0 or 1"):
        check_inputs(cfg, [1, 2, 3], [1, 2, 1])
    ids, mask, _ = check_inputs(cfg, [1, 2, 3], np.array([1.0, 1.0, 0.0]))
    assert mask.tolist() == [[True, True, False]]


def test_artifact_written_with_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["random-artifact", "--config", "tiny", "--out", str(tmp_path / "a.safetensors")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == 0o644


def test_generate_reports_progress_per_unit(tmp_path, capsys):
    assert main(["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", "threshold_unit,requant_unit",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == ["bitaccel generate: generating threshold_unit",
                                                      "bitaccel generate: generating requant_unit"]
