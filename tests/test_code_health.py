"""Structural rules the issue tracker asked for: layer boundaries, one validator, dead code gone."""
from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(("." * node.level) + node.module)
    return found


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "sim", "bench")) if f.endswith(".py")))
def test_benches_do_not_import_the_host_side_runner(name):
    """sim/bench runs inside the simulator; sim/runner.py (builds, subprocesses) is the host side."""
    imports = _imports(os.path.join(REPO, "sim", "bench", name))
    assert not {"bitaccel.sim.runner", "..runner", "bitaccel.sim.measure", "bitaccel.sim.commands"} & imports, imports


def test_run_env_imports_neither_side():
    assert _imports(os.path.join(REPO, "sim", "run_env.py")) <= {"__future__", "dataclasses", "types",
                                                                  "bitaccel.golden.formats", "bitaccel.hw.params"}


def test_one_integer_validator_in_the_units():
    """The units check integer parameters with hw.spec.validate.require_int, not private copies."""
    mine = ["table.py", "threshold.py", "requant.py", "softmax.py", "divider.py", "rsqrt.py", "layernorm.py",
            "mac_array.py", "popcount.py", os.path.join("encoder", "axi.py")]
    for name in mine:
        with open(os.path.join(REPO, "hw", name)) as f:
            text = f.read()
        assert "isinstance(value, bool)" not in text and "def _check_int" not in text, name


def test_dead_code_is_gone():
    from bitaccel.golden import model as golden_model
    from bitaccel.golden import packing as golden_packing
    from bitaccel.sim import commands as sim_commands
    from bitaccel.golden.artifact import Artifact

    assert not hasattr(golden_model, "infer") and not hasattr(golden_packing, "bits_to_pm1")
    assert not hasattr(Artifact, "bits")
    assert not hasattr(sim_commands, "SimulationPending") and not hasattr(sim_commands, "_bench_workload")


LAYERS = ("compiler", "golden", "hw", "model", "sim")


def test_the_installed_package_adds_one_name():
    """Issue #10 packaging: the layers import as bitaccel.<layer>; `golden`, `sim`, ... are not importable names."""
    import subprocess
    import sys
    import tempfile

    code = ("import importlib.util, bitaccel.golden.model, bitaccel.sim.bench.harness, bitaccel.hw.params\n"
            f"print([n for n in {LAYERS!r} if importlib.util.find_spec(n) is not None])")
    with tempfile.TemporaryDirectory() as elsewhere:   # not the checkout, whose folders are on no path
        out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_module_imports_a_layer_by_its_folder_name():
    bad = []
    for folder in (*LAYERS, "bitaccel", "tests", "bench"):
        for dirpath, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    bad += [(path, m) for m in _imports(path) if m.split(".")[0] in LAYERS]
    assert not bad, bad
