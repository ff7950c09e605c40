"""Generation hygiene: a header naming the configuration and version, no stale files of another configuration."""
from __future__ import annotations

import os

from bitaccel.golden.version import __version__
from bitaccel.hw import generate as gen
from bitaccel.hw.params import HwParams

A = HwParams(rows=2, cols=2, lanes=8)
B = HwParams(rows=2, cols=4, lanes=8)


def test_every_verilog_file_names_its_configuration_and_version(tmp_path):
    gen.generate(A, tmp_path, units=["threshold_unit"])
    first = (tmp_path / "threshold_unit.v").read_text().splitlines()[0]
    assert first.startswith(gen.HEADER_MARK)
    assert f"bitaccel {__version__}" in first and "threshold_unit" in first
    assert gen.config_name(A) in first and "rows=2 cols=2 lanes=8" in first
    assert gen.config_name(A) != gen.config_name(B)
    assert gen.config_name(A) == gen.config_name(HwParams(rows=2, cols=2, lanes=8))


def test_regenerating_removes_stale_files_of_another_configuration_only(tmp_path):
    gen.generate(A, tmp_path, units=["threshold_unit", "requant_unit"])
    (tmp_path / "mine.v").write_text("module mine; endmodule\n")              # a user's file: never deleted
    (tmp_path / "notes.txt").write_text("keep\n")
    gen.generate(B, tmp_path, units=["threshold_unit"])
    assert sorted(os.listdir(tmp_path)) == ["bitaccel_hw.json", "mine.v", "notes.txt", "threshold_unit.v"]
    assert gen.config_name(B) in (tmp_path / "threshold_unit.v").read_text().splitlines()[0]
    gen.generate(B, tmp_path, units=["requant_unit"])                          # same configuration: kept
    assert {"threshold_unit.v", "requant_unit.v", "mine.v"} <= set(os.listdir(tmp_path))
