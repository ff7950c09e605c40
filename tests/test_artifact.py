"""Artifact round trip, compatibility with the safetensors reader, and every corruption case."""
import json
import struct

import numpy as np
import pytest

from bitaccel.golden.artifact import FORMAT_VERSION, Artifact, ArtifactError, header_bytes, load_artifact, save_artifact
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.random_artifact import random_artifact


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_artifacts):
    path = tmp_path_factory.mktemp("art") / "tiny.safetensors"
    save_artifact(tiny_artifacts[2], path)
    return path


def rewrite_header(src, dst, edit, seal=True):
    """Apply `edit` to the header; `seal`: recompute the header checksum (a deliberate edit, not a corruption)."""
    data = src.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    if seal:
        blob = header_bytes(header)
    else:
        blob = json.dumps(header, sort_keys=True).encode()
        blob += b" " * (-len(blob) % 8)
    dst.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n:])


def test_unsealed_header_edit_is_caught_by_the_header_checksum(saved, tmp_path):
    rewrite_header(saved, tmp_path / "m.safetensors", lambda h: h.pop("layers.1.ffn2.n_neg"), seal=False)
    with pytest.raises(ArtifactError, match="header checksum mismatch"):
        load_artifact(tmp_path / "m.safetensors")


def test_older_format_version_is_named(saved, tmp_path):
    def edit(h):
        m = json.loads(h["__metadata__"]["bitaccel"])
        m["version"] = 1
        h["__metadata__"] = {"bitaccel": json.dumps(m)}      # version 1 files had no header checksum
    rewrite_header(saved, tmp_path / "v1.safetensors", edit, seal=False)
    with pytest.raises(ArtifactError, match="artifact version 1, this bitaccel reads version 2"):
        load_artifact(tmp_path / "v1.safetensors")


def test_round_trip_is_exact(saved, tiny_artifacts):
    art = tiny_artifacts[2]
    back = load_artifact(saved)
    assert back.config == art.config and back.numerics == art.numerics and back.quant == art.quant
    assert set(back.tensors) == set(art.tensors)
    for name, t in art.tensors.items():
        assert back.tensors[name].dtype == t.dtype and np.array_equal(back.tensors[name], t), name
    ids = np.arange(1, 17)
    assert np.array_equal(IntegerModel(back).forward(ids)["logits"], IntegerModel(art).forward(ids)["logits"])


def test_readable_by_the_safetensors_library(saved, tiny_artifacts):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    tensors = load_file(str(saved))
    assert np.array_equal(tensors["layers.0.q.bits"], tiny_artifacts[2].tensors["layers.0.q.bits"])
    with safe_open(str(saved), framework="numpy") as f:
        manifest = json.loads(f.metadata()["bitaccel"])
    assert manifest["version"] == FORMAT_VERSION and manifest["config"]["hidden"] == 64


def test_wrong_version(saved, tmp_path):
    def edit(h):
        m = json.loads(h["__metadata__"]["bitaccel"])
        m["version"] = FORMAT_VERSION + 1
        h["__metadata__"]["bitaccel"] = json.dumps(m)
    rewrite_header(saved, tmp_path / "v.safetensors", edit)
    with pytest.raises(ArtifactError, match="version"):
        load_artifact(tmp_path / "v.safetensors")


def test_bad_checksum(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x10
    (tmp_path / "c.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(tmp_path / "c.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 8, 200, -1])
def test_truncated(saved, tmp_path, keep):
    data = saved.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:keep] if keep >= 0 else data[:-17])
    with pytest.raises(ArtifactError, match="truncated"):
        load_artifact(tmp_path / "t.safetensors")


def drop_tensor(src, dst, name):
    """Remove tensor `name` from the file: its header entry and its bytes, later offsets shifted, header sealed."""
    data = src.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    start, end = header.pop(name)["data_offsets"]
    for key, info in header.items():
        if key != "__metadata__" and info["data_offsets"][0] >= end:
            info["data_offsets"] = [o - (end - start) for o in info["data_offsets"]]
    blob = header_bytes(header)
    dst.write_bytes(struct.pack("<Q", len(blob)) + blob + body[:start] + body[end:])


def test_gap_between_tensors(saved, tmp_path):
    rewrite_header(saved, tmp_path / "g.safetensors", lambda h: h.pop("layers.1.ffn2.n_neg"))
    with pytest.raises(ArtifactError, match="gap or overlap"):
        load_artifact(tmp_path / "g.safetensors")


def test_missing_tensor(saved, tmp_path):
    drop_tensor(saved, tmp_path / "m.safetensors", "layers.1.ffn2.n_neg")
    with pytest.raises(ArtifactError, match="missing 1 tensor.*layers.1.ffn2.n_neg"):
        load_artifact(tmp_path / "m.safetensors")


def test_not_an_artifact(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    with pytest.raises(ArtifactError, match="not a bitaccel artifact"):
        load_artifact(tmp_path / "x.safetensors")
    (tmp_path / "y.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError):
        load_artifact(tmp_path / "y.bin")
    with pytest.raises(ArtifactError, match="no such"):
        load_artifact(tmp_path / "nope.safetensors")


def test_mismatched_shapes_and_quant_rejected(tiny_artifacts):
    art = tiny_artifacts[1]
    bad = Artifact(art.config, art.numerics, dict(art.quant), dict(art.tensors))
    bad.tensors["layers.0.q.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ArtifactError, match="shape"):
        bad.validate()
    bad = Artifact(art.config, art.numerics, dict(art.quant), dict(art.tensors))
    bad.quant["layers.0.q.in"] = 3
    with pytest.raises(ArtifactError, match="bits"):
        bad.validate()
    bad = Artifact(art.config, art.numerics, dict(art.quant), dict(art.tensors))
    bad.quant["layers.0.q.in"] = 2  # W1A2 at this site needs requant tensors, not a threshold
    with pytest.raises(ArtifactError, match="missing|unexpected"):
        bad.validate()


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path, tiny_artifacts):
    path = tmp_path / "a.safetensors"
    save_artifact(tiny_artifacts[1], path)
    before = path.read_bytes()
    broken = Artifact(tiny_artifacts[1].config, tiny_artifacts[1].numerics, dict(tiny_artifacts[1].quant), {})
    with pytest.raises(ArtifactError):
        save_artifact(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


@pytest.mark.parametrize("config", ["minilm", "bert-base"])
def test_presets_generate_valid_artifacts(config):
    art = random_artifact(config, seed=1)
    assert art.validate() is art
    assert art["embeddings.word.bits"].shape[0] == 30522


def test_generator_is_seeded(tiny_artifacts):
    again = random_artifact("tiny", seed=11, act_bits=1)
    for name, t in tiny_artifacts[1].tensors.items():
        assert np.array_equal(again.tensors[name], t), name
    other = random_artifact("tiny", seed=12, act_bits=1)
    assert not np.array_equal(other["layers.0.q.bits"], again["layers.0.q.bits"])
