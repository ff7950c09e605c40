"""One registry of units (hw/spec/units.py), one name per unit in every command and table."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from bitaccel.cli import build_parser, main
from bitaccel.hw.spec import units as spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_imports_no_amaranth():
    code = "import sys, hw.spec.units; assert 'amaranth' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_every_table_uses_the_registry_names():
    from bitaccel.hw import generate as hw_generate
    from bitaccel.sim import runner as sim_runner

    assert list(hw_generate.UNITS) == list(spec.UNITS)
    assert sim_runner.UNIT_BENCHES == {u.name: u.bench for u in spec.UNITS.values() if u.bench}
    for u in spec.UNITS.values():
        assert importlib.util.find_spec(u.bench) is not None, u.bench


@pytest.mark.parametrize("name", [n for n in spec.UNITS if n != "accelerator"])
def test_component_class_is_lazy_and_builds_from_params(name):
    from amaranth.lib import wiring

    from bitaccel.hw.params import HwParams

    cls = spec.component_class(name)
    assert issubclass(cls, wiring.Component)
    assert isinstance(cls.from_params(HwParams(rows=2, cols=2, lanes=8)), cls)


def test_commands_accept_the_same_names(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    simulate_choices = next(a for a in sub["simulate"]._actions if a.dest == "unit").choices
    assert list(simulate_choices) == spec.simulated_units()
    assert set(spec.simulated_units()) <= set(spec.UNITS)
    for name in ("softmax", "threshold", "layernorm", "requant"):      # the old second spellings are gone
        assert main(["simulate", "--unit", name, "--array", "2x2x8"]) == 2
        assert main(["synth", "--rows", "2", "--cols", "2", "--lanes", "8", "--target", "xilinx",
                     "--unit", name]) == 2
        assert main(["report", "--model", "tiny", "--synth", "--synth-units", name]) == 2
    err = capsys.readouterr().err
    assert "unknown unit 'softmax'" in err and "softmax_unit" in err


def test_generate_accepts_registry_names(tmp_path, capsys):
    assert main(["generate", "--rows", "2", "--cols", "2", "--lanes", "8", "--units", "threshold_unit",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "threshold_unit.v").exists()


def test_resolve():
    assert spec.resolve(None) == list(spec.UNITS)
    assert spec.resolve(["softmax_unit", "mac_array"]) == ["softmax_unit", "mac_array"]
    for bad, msg in (([], "no units"), (["x"], "unknown unit 'x'"), (["mac_array"] * 2, "twice")):
        with pytest.raises(ValueError, match=msg):
            spec.resolve(bad)
