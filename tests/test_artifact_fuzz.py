"""Fuzz test of the artifact loader: seeded corruptions of a real artifact are all rejected cleanly.

1,000+ corruptions (tests/artifact_corruptions.py: byte flips, truncations, appended bytes,
header-length edits, sealed structural header edits) of a tiny random W1A1 artifact go
through `golden.artifact.load_artifact`: each must raise ArtifactError naming the file,
never another exception and never return. A sample goes through every command that reads
an artifact (`infer`, `info`, `report --model`): exit status 2, one line on stderr.
"""
from __future__ import annotations

import collections

import pytest

from bitaccel.cli import main
from bitaccel.golden.artifact import ArtifactError, load_artifact, save_artifact
from bitaccel.golden.random_artifact import random_artifact

from tests.artifact_corruptions import corruptions

SEED = 20261129
COUNT = 1200


@pytest.fixture(scope="module")
def artifact_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "tiny.safetensors"
    save_artifact(random_artifact("tiny", seed=5, act_bits=1), path)
    load_artifact(path)                      # the original is valid
    return path.read_bytes()


def test_loader_rejects_every_corruption(artifact_bytes, tmp_path):
    print(f"seed={SEED} count={COUNT}")
    path = tmp_path / "corrupt.safetensors"
    kinds = collections.Counter()
    messages = collections.Counter()
    for i, kind, data in corruptions(artifact_bytes, SEED, COUNT):
        path.write_bytes(data)
        try:
            load_artifact(path)
        except ArtifactError as e:
            msg = str(e)
            assert msg.startswith(f"{path}: ") and "\n" not in msg, (i, kind, msg)
            messages[msg.split(": ", 2)[1].split(" ")[0]] += 1
        else:
            pytest.fail(f"corruption {i} ({kind}, seed {SEED}) was accepted")
        kinds[kind] += 1
    assert sum(kinds.values()) == COUNT >= 1000
    assert set(kinds) == {"flip", "header_flip", "truncate", "append", "length", "edit"}
    print(dict(kinds), messages.most_common(12))


@pytest.mark.parametrize("command", [
    ["infer", "--artifact", "{P}", "--ids", "101,5,102"],
    ["info", "--artifact", "{P}"],
    ["report", "--model", "{P}", "--arrays", "2x2x8"],
])
def test_every_command_rejects_corrupt_artifacts(command, artifact_bytes, tmp_path, capsys):
    path = tmp_path / "corrupt.safetensors"
    for i, kind, data in corruptions(artifact_bytes, SEED + 1, 24):
        path.write_bytes(data)
        status = main([a.replace("{P}", str(path)) for a in command])
        captured = capsys.readouterr()
        assert status == 2, (i, kind, captured)
        assert len(captured.err.splitlines()) == 1 and str(path) in captured.err, (i, kind, captured.err)
        assert captured.out == "", (i, kind)
