"""The bitaccel CLI commands as documented in the README."""
import json
import subprocess
import sys

import pytest

from bitaccel.cli import main


@pytest.fixture(scope="module")
def minilm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "minilm.safetensors"
    assert main(["random-artifact", "--config", "minilm", "--seed", "3", "--out", str(path)]) == 0
    return path


def test_infer_json(minilm_file, capsys):
    assert main(["infer", "--artifact", str(minilm_file), "--ids", "101,7592,102", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"logits", "prediction"} and len(out["logits"]) == 2
    assert out["prediction"] == max(range(2), key=lambda i: out["logits"][i])


def test_infer_text_and_packed_path_agree(minilm_file, capsys):
    assert main(["infer", "--artifact", str(minilm_file), "--ids", "101,7592,2088,102"]) == 0
    text = capsys.readouterr().out
    assert "prediction:" in text
    assert main(["infer", "--artifact", str(minilm_file), "--ids", "101,7592,2088,102", "--path", "packed"]) == 0
    assert capsys.readouterr().out == text


@pytest.mark.parametrize("argv, message", [
    (["--ids", "101,x"], "comma-separated integers"),
    (["--ids", ",".join(["7"] * 513)], "longer than the model's max_position 512"),
    (["--ids", "101,40000"], "token ids must lie"),
    (["--ids", "1,2", "--mask", "0,0"], "at least one unmasked"),
])
def test_infer_bad_input_exits_2_with_message(minilm_file, capsys, argv, message):
    assert main(["infer", "--artifact", str(minilm_file)] + argv) == 2
    assert message in capsys.readouterr().err


def test_infer_missing_artifact(tmp_path, capsys):
    assert main(["infer", "--artifact", str(tmp_path / "none.safetensors"), "--ids", "1"]) == 2
    assert "no such artifact" in capsys.readouterr().err


def test_console_script_entry_point(minilm_file):
    """`python -m bitaccel.cli` is the same program as the `bitaccel` console script."""
    r = subprocess.run([sys.executable, "-m", "bitaccel.cli", "info", "--artifact", str(minilm_file)],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["config"]["hidden"] == 384
