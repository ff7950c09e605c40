"""The model artifact: a versioned, self-describing, safetensors-compatible file.

Layout (the safetensors format, written and read here with NumPy only; no pickle,
nothing is executed on load):
  8 bytes   little-endian u64 N, the header length
  N bytes   JSON header: {tensor name: {dtype, shape, data_offsets}, "__metadata__": {"bitaccel": MANIFEST}}
  rest      raw little-endian tensor bytes, in header order
MANIFEST is a JSON string: format name and version, model config, numeric format,
the activation bits of every quantization site, the tokenizer reference, the
producer, and the SHA-256 of every tensor. See docs/artifact.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from .config import LINEARS, ModelConfig, site_has_beta, site_names, site_width
from .formats import NumericFormat
from .packing import n_words

FORMAT_NAME = "bitaccel-artifact"
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024

_DTYPES = {"U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "I32": np.int32,
           "U32": np.uint32, "I64": np.int64, "U64": np.uint64, "F32": np.float32, "F64": np.float64}
_NAMES = {np.dtype(v).newbyteorder("<"): k for k, v in _DTYPES.items()}


class ArtifactError(ValueError):
    """A file that is not a valid artifact for this version of bitaccel."""


@dataclasses.dataclass
class Artifact:
    """An artifact in memory: config, numeric format, per-site bits, tensors and provenance."""

    config: ModelConfig
    numerics: NumericFormat
    quant: dict[str, int]
    tensors: dict[str, np.ndarray]
    tokenizer: dict = dataclasses.field(default_factory=lambda: {"kind": "none"})
    producer: str = ""

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise ArtifactError(f"artifact has no tensor {name!r}") from None

    def bits(self, site: str) -> int:
        return self.quant[site]

    def validate(self) -> "Artifact":
        """Check that every expected tensor is present with its dtype and shape, and nothing else."""
        self.config.validate()
        self.numerics.validate()
        expected_sites = set(site_names(self.config))
        if set(self.quant) != expected_sites:
            missing = sorted(expected_sites - set(self.quant))
            extra = sorted(set(self.quant) - expected_sites)
            raise ArtifactError(f"quantization map does not match the config: missing {missing[:5]}, unknown {extra[:5]}")
        for site, bits in self.quant.items():
            if bits not in (1, 2, 4, 8):
                raise ArtifactError(f"site {site!r}: activation bits must be 1, 2, 4 or 8, not {bits!r}")
        expected = expected_tensors(self.config, self.quant)
        missing = sorted(set(expected) - set(self.tensors))
        if missing:
            raise ArtifactError(f"artifact is missing {len(missing)} tensor(s), first: {missing[:3]}")
        extra = sorted(set(self.tensors) - set(expected))
        if extra:
            raise ArtifactError(f"artifact has unexpected tensor(s) {extra[:3]} (made by another version?)")
        for name, (dtype, shape) in expected.items():
            t = self.tensors[name]
            if t.dtype != np.dtype(dtype):
                raise ArtifactError(f"tensor {name!r} has dtype {t.dtype}, expected {np.dtype(dtype)}")
            if shape is None:
                if t.ndim != 1 or t.shape[0] < 1:
                    raise ArtifactError(f"tensor {name!r} must be a non-empty vector, has shape {t.shape}")
            elif t.shape != tuple(shape):
                raise ArtifactError(f"tensor {name!r} has shape {t.shape}, expected {tuple(shape)}")
        return self


def expected_tensors(config: ModelConfig, quant: dict[str, int]) -> dict[str, tuple[type, tuple | None]]:
    """Every tensor an artifact holds: name -> (dtype, shape); shape None = any non-empty vector."""
    c = config
    h, v, p, t = c.hidden, c.vocab_size, c.max_position, c.type_vocab
    out: dict[str, tuple[type, tuple | None]] = {
        "embeddings.word.bits": (np.uint64, (v, n_words(h))),
        "embeddings.word.scale": (np.float64, (v,)),
        "embeddings.word.scale_q": (np.int32, (v,)),
        "embeddings.position": (np.float32, (p, h)),
        "embeddings.position_q": (np.int16, (p, h)),
        "embeddings.token_type": (np.float32, (t, h)),
        "embeddings.token_type_q": (np.int16, (t, h)),
        "classifier.weight": (np.float32, (c.num_labels, h)),
        "classifier.bias": (np.float32, (c.num_labels,)),
    }
    _add_layernorm(out, "embeddings.ln", h)
    _add_linear(out, "pooler", *c.linear_shape("pooler"))
    for i in range(c.layers):
        pre = f"layers.{i}"
        for lin in LINEARS:
            _add_linear(out, f"{pre}.{lin}", *c.linear_shape(lin))
        _add_layernorm(out, f"{pre}.ln1", h)
        _add_layernorm(out, f"{pre}.ln2", h)
        out[f"{pre}.softmax.exp_lut"] = (np.int64, None)
        for res in ("o.out", "ffn2.out"):
            _add_requant(out, f"{pre}.{res}", h)
    for site in site_names(config):
        width = site_width(config, site)
        out[f"{site}.alpha"] = (np.float64, ())
        if site_has_beta(site):
            out[f"{site}.beta"] = (np.float32, (width,))
        if site.endswith("probs"):
            if quant[site] == 1:
                out[f"{site}.theta"] = (np.int64, ())
            else:
                _add_requant(out, site, 1)
        elif quant[site] == 1:
            out[f"{site}.thr"] = (np.int64, (width,))
        else:
            _add_requant(out, site, width)
    return out


def _add_linear(out: dict, name: str, n: int, k: int) -> None:
    out[f"{name}.bits"] = (np.uint64, (n, n_words(k)))
    out[f"{name}.n_neg"] = (np.int32, (n,))
    out[f"{name}.scale"] = (np.float64, ())
    out[f"{name}.bias"] = (np.float32, (n,))


def _add_layernorm(out: dict, name: str, h: int) -> None:
    out[f"{name}.gamma"] = (np.float32, (h,))
    out[f"{name}.beta"] = (np.float32, (h,))
    out[f"{name}.gamma_q"] = (np.int16, (h,))
    out[f"{name}.beta_q"] = (np.int16, (h,))
    out[f"{name}.eps_q"] = (np.int64, ())


def _add_requant(out: dict, name: str, width: int) -> None:
    out[f"{name}.rq_m"] = (np.int64, ())
    out[f"{name}.rq_b"] = (np.int64, (width,))
    out[f"{name}.rq_s"] = (np.int64, ())
    out[f"{name}.rq_lo"] = (np.int64, (width,))
    out[f"{name}.rq_hi"] = (np.int64, ())


# ----------------------------------------------------------------------------- file I/O
def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.array(a, order="C").tobytes()).hexdigest()


def save_artifact(artifact: Artifact, path: str | os.PathLike) -> None:
    """Validate and write atomically (temporary file in the same folder, then rename)."""
    artifact.validate()
    names = sorted(artifact.tensors)
    header: dict = {}
    offset = 0
    arrays = []
    for name in names:
        a = np.array(artifact.tensors[name], order="C", copy=True)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": artifact.config.to_dict(),
        "numerics": artifact.numerics.to_dict(),
        "quant": dict(sorted(artifact.quant.items())),
        "tokenizer": artifact.tokenizer,
        "producer": artifact.producer,
        "sha256": {name: _sha256(a) for name, a in zip(names, arrays)},
    }
    header["__metadata__"] = {"bitaccel": json.dumps(manifest, sort_keys=True)}
    blob = json.dumps(header, sort_keys=True).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".artifact-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for a in arrays:
                f.write(a.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_artifact(path: str | os.PathLike, verify_checksums: bool = True) -> Artifact:
    """Read, check and return an artifact. Every problem raises ArtifactError with the reason."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such artifact file") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder, not an artifact file") from None
    if len(data) < 8:
        raise ArtifactError(f"{path}: truncated ({len(data)} bytes; not even a header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ArtifactError(f"{path}: truncated or not an artifact (header length {n}, file {len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        manifest = json.loads(header.pop("__metadata__")["bitaccel"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{path}: not a bitaccel artifact (unreadable header or no manifest: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path}: not a bitaccel artifact (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact version {manifest.get('version')!r}, this bitaccel reads version {FORMAT_VERSION}")
    body = memoryview(data)[8 + n:]
    tensors = {}
    sums = manifest.get("sha256", {})
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{path}: bad header entry for tensor {name!r}: {info!r}") from None
        if end > len(body):
            raise ArtifactError(f"{path}: truncated: tensor {name!r} ends at byte {end} of a {len(body)}-byte body")
        if end - start != dtype.itemsize * int(np.prod(shape, dtype=np.int64)) or start < 0:
            raise ArtifactError(f"{path}: tensor {name!r}: byte range does not match its shape {shape}")
        a = np.frombuffer(body[start:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        if verify_checksums:
            if name not in sums:
                raise ArtifactError(f"{path}: no checksum for tensor {name!r}")
            if _sha256(a.astype(dtype)) != sums[name]:
                raise ArtifactError(f"{path}: checksum mismatch in tensor {name!r} (corrupt file)")
        tensors[name] = a
    try:
        art = Artifact(
            config=ModelConfig.from_dict(manifest["config"]),
            numerics=NumericFormat.from_dict(manifest["numerics"]),
            quant={k: int(v) for k, v in manifest["quant"].items()},
            tensors=tensors,
            tokenizer=manifest.get("tokenizer", {"kind": "none"}),
            producer=manifest.get("producer", ""),
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ArtifactError):
            raise
        raise ArtifactError(f"{path}: bad manifest: {e}") from None
    try:
        return art.validate()
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
