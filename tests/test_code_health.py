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
    assert not {"sim.runner", "..runner", "sim.measure", "sim.commands"} & imports, imports


def test_run_env_imports_neither_side():
    assert _imports(os.path.join(REPO, "sim", "run_env.py")) <= {"__future__", "dataclasses", "types",
                                                                  "golden.formats", "hw.params"}


def test_one_integer_validator_in_the_units():
    """The units check integer parameters with hw.spec.validate.require_int, not private copies."""
    mine = ["table.py", "threshold.py", "requant.py", "softmax.py", "divider.py", "rsqrt.py", "layernorm.py",
            "mac_array.py", "popcount.py", os.path.join("encoder", "axi.py")]
    for name in mine:
        with open(os.path.join(REPO, "hw", name)) as f:
            text = f.read()
        assert "isinstance(value, bool)" not in text and "def _check_int" not in text, name


def test_dead_code_is_gone():
    import golden.model
    import golden.packing
    import sim.commands
    from golden.artifact import Artifact

    assert not hasattr(golden.model, "infer") and not hasattr(golden.packing, "bits_to_pm1")
    assert not hasattr(Artifact, "bits")
    assert not hasattr(sim.commands, "SimulationPending") and not hasattr(sim.commands, "_bench_workload")
