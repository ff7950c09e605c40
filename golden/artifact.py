"""The model artifact: a versioned, self-describing, safetensors-compatible file.

Layout (the safetensors format, written and read here with NumPy only; no pickle,
nothing is executed on load):
  8 bytes   little-endian u64 N, the header length
  N bytes   JSON header: {tensor name: {dtype, shape, data_offsets}, "__metadata__": {"bitaccel": MANIFEST}}
  rest      raw little-endian tensor bytes, in header order
MANIFEST is a JSON string: format name and version, model config, the head kind
("classifier" or "span"; absent in older files = "classifier"), numeric format, the
activation bits of every quantization site, the tokenizer reference, the producer, and
the SHA-256 of every tensor. See docs/artifact.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import tempfile

import numpy as np

from .config import HEADS, LINEARS, ModelConfig, check_head, site_has_beta, site_names, site_width
from .formats import NumericFormat
from .packing import n_words

FORMAT_NAME = "bitaccel-artifact"
FORMAT_VERSION = 2
_MAX_HEADER = 100 * 1024 * 1024
#: __metadata__ key of the header checksum: SHA-256 of the canonical header JSON without this key.
HEADER_SHA256 = "bitaccel_header_sha256"

_DTYPES = {"U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "I32": np.int32,
           "U32": np.uint32, "I64": np.int64, "U64": np.uint64, "F32": np.float32, "F64": np.float64}
_NAMES = {np.dtype(v).newbyteorder("<"): k for k, v in _DTYPES.items()}


class ArtifactError(ValueError):
    """A file that is not a valid artifact for this version of bitaccel."""


@dataclasses.dataclass
class Artifact:
    """An artifact in memory: config, numeric format, per-site bits, tensors, provenance and head kind.

    head : "classifier" (binarized pooler + full-precision classifier) or "span" (full-precision
        start / end logits per token, `span.weight` (2, H) and `span.bias` (2)); golden.config.HEADS.
    """

    config: ModelConfig
    numerics: NumericFormat
    quant: dict[str, int]
    tensors: dict[str, np.ndarray]
    tokenizer: dict = dataclasses.field(default_factory=lambda: {"kind": "none"})
    producer: str = ""
    head: str = "classifier"

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise ArtifactError(f"artifact has no tensor {name!r}") from None

    def validate(self) -> "Artifact":
        """Check that every expected tensor is present with its dtype and shape, and nothing else."""
        self.config.validate()
        self.numerics.validate()
        if self.head not in HEADS:
            raise ArtifactError(f"head must be one of {', '.join(HEADS)}, not {self.head!r}")
        if self.head == "span" and self.config.num_labels != 2:
            raise ArtifactError(f"a span head has num_labels = 2 (start, end), not {self.config.num_labels}")
        expected_sites = set(site_names(self.config, self.head))
        if set(self.quant) != expected_sites:
            missing = sorted(expected_sites - set(self.quant))
            extra = sorted(set(self.quant) - expected_sites)
            raise ArtifactError(f"quantization map does not match the config: missing {missing[:5]}, unknown {extra[:5]}")
        for site, bits in self.quant.items():
            if bits not in (1, 2, 4, 8):
                raise ArtifactError(f"site {site!r}: activation bits must be 1, 2, 4 or 8, not {bits!r}")
        expected = expected_tensors(self.config, self.quant, self.head)
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


def expected_tensors(config: ModelConfig, quant: dict[str, int],
                     head: str = "classifier") -> dict[str, tuple[type, tuple | None]]:
    """Every tensor an artifact holds: name -> (dtype, shape); shape None = any non-empty vector.

    head "classifier": pooler (binary linear) and classifier; "span": span.weight (2, H), span.bias (2)."""
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
    }
    if check_head(head) == "classifier":
        out["classifier.weight"] = (np.float32, (c.num_labels, h))
        out["classifier.bias"] = (np.float32, (c.num_labels,))
        _add_linear(out, "pooler", *c.linear_shape("pooler"))
    else:
        out["span.weight"] = (np.float32, (2, h))
        out["span.bias"] = (np.float32, (2,))
    _add_layernorm(out, "embeddings.ln", h)
    for i in range(c.layers):
        pre = f"layers.{i}"
        for lin in LINEARS:
            _add_linear(out, f"{pre}.{lin}", *c.linear_shape(lin))
        _add_layernorm(out, f"{pre}.ln1", h)
        _add_layernorm(out, f"{pre}.ln2", h)
        out[f"{pre}.softmax.exp_lut"] = (np.int64, None)
        for res in ("o.out", "ffn2.out"):
            _add_requant(out, f"{pre}.{res}", h)
    for site in site_names(config, head):
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


def _header_sha256(header: dict) -> str:
    """SHA-256 of the canonical JSON of `header` without its own checksum entry."""
    meta = {k: v for k, v in header["__metadata__"].items() if k != HEADER_SHA256}
    return hashlib.sha256(json.dumps({**header, "__metadata__": meta}, sort_keys=True).encode("utf-8")).hexdigest()


def _canonical_header(header: dict) -> bytes:
    """The header's bytes as written: sorted-key JSON, padded with spaces to a multiple of 8."""
    blob = json.dumps(header, sort_keys=True).encode("utf-8")
    return blob + b" " * (-len(blob) % 8)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def header_bytes(header: dict) -> bytes:
    """Seal `header` (set its checksum entry) and return its bytes as written after the length."""
    header["__metadata__"][HEADER_SHA256] = _header_sha256(header)
    return _canonical_header(header)


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
        "head": artifact.head,
        "numerics": artifact.numerics.to_dict(),
        "quant": dict(sorted(artifact.quant.items())),
        "tokenizer": artifact.tokenizer,
        "producer": artifact.producer,
        "sha256": {name: _sha256(a) for name, a in zip(names, arrays)},
    }
    header["__metadata__"] = {"bitaccel": json.dumps(manifest, sort_keys=True)}
    blob = header_bytes(header)
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
        os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600; a written file gets the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_artifact(path: str | os.PathLike) -> Artifact:
    """Read, check and return an artifact; every command that reads an artifact calls this.

    Checks, in order: the file, the header length, the header's JSON and checksum (any
    edited or flipped header byte is caught here), the manifest's format, version and field
    types, every tensor's dtype, shape and byte range (contiguous, nothing after the last),
    every tensor's SHA-256, and finally `Artifact.validate` (config, numerics, quantization
    map, the expected tensor list). Every problem raises ArtifactError naming the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such artifact file") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder, not an artifact file") from None
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        return _parse(data)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


def _parse(data: bytes) -> Artifact:
    if len(data) < 8:
        raise ArtifactError(f"truncated ({len(data)} bytes; not even a header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ArtifactError(f"truncated or not an artifact (header length {n}, file {len(data)} bytes)")
    raw = data[8:8 + n]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ArtifactError(f"not a bitaccel artifact (unreadable header: {e})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("bitaccel"), str):
        raise ArtifactError("not a bitaccel artifact (no bitaccel manifest in the header)")
    if meta.get(HEADER_SHA256) is None:
        version = _peek_version(meta["bitaccel"])
        if version != FORMAT_VERSION:
            raise ArtifactError(f"artifact version {version!r}, this bitaccel reads version {FORMAT_VERSION} "
                                f"(regenerate or re-export it)")
        raise ArtifactError("corrupt header (its checksum entry is missing)")
    if meta[HEADER_SHA256] != _header_sha256(header) or raw != _canonical_header(header):
        raise ArtifactError("header checksum mismatch (corrupt or edited header)")
    try:
        manifest = json.loads(meta["bitaccel"])
    except (json.JSONDecodeError, RecursionError) as e:
        raise ArtifactError(f"unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"not a bitaccel artifact (format "
                            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"artifact version {manifest.get('version')!r}, this bitaccel reads version "
                            f"{FORMAT_VERSION} (regenerate or re-export it)")
    _check_manifest_types(manifest)
    del header["__metadata__"]
    tensors = _read_tensors(header, memoryview(data)[8 + n:], manifest["sha256"])
    try:
        config = ModelConfig.from_dict(manifest["config"])
        numerics = NumericFormat.from_dict(manifest["numerics"])
    except (TypeError, ValueError) as e:      # unknown keywords, out-of-range values
        raise ArtifactError(f"bad manifest: {e}") from None
    art = Artifact(config=config, numerics=numerics, quant=dict(manifest["quant"]), tensors=tensors,
                   tokenizer=manifest["tokenizer"], producer=manifest["producer"],
                   head=manifest.get("head", "classifier"))
    try:
        return art.validate()
    except ArtifactError:
        raise
    except ValueError as e:                    # config / numerics validation
        raise ArtifactError(str(e)) from None


def _peek_version(manifest_text: str):
    try:
        m = json.loads(manifest_text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return m.get("version") if isinstance(m, dict) else None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_manifest_types(m: dict) -> None:
    """Field types of the manifest (values are checked by the config, numerics and Artifact.validate)."""
    for key, kind in (("config", dict), ("numerics", dict), ("quant", dict), ("tokenizer", dict),
                      ("producer", str), ("sha256", dict)):
        if not isinstance(m.get(key), kind):
            raise ArtifactError(f"bad manifest: {key!r} must be a JSON {kind.__name__}")
    if "head" in m and m["head"] not in HEADS:
        raise ArtifactError(f"bad manifest: 'head' must be one of {', '.join(map(repr, HEADS))}, "
                            f"not {m['head']!r}")
    if not all(_is_int(v) for v in m["quant"].values()):
        raise ArtifactError("bad manifest: activation bits in 'quant' must be integers")
    if not all(isinstance(v, str) for v in m["sha256"].values()):
        raise ArtifactError("bad manifest: checksums in 'sha256' must be strings")
    layers = m["config"].get("layers")
    if _is_int(layers) and not 1 <= layers <= _MAX_LAYERS:
        raise ArtifactError(f"bad manifest: config layers must be in [1, {_MAX_LAYERS}], not {layers}")


#: Largest layer count the loader accepts (BERT-large has 24).
_MAX_LAYERS = 1024


def _read_tensors(header: dict, body: memoryview, sums: dict) -> dict[str, np.ndarray]:
    """The tensors the header describes: dtype, shape and byte range checked, contiguous, checksums verified."""
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ArtifactError(f"bad header entry for tensor {name!r}")
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
            raise ArtifactError(f"tensor {name!r}: unknown dtype {dtype_name!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ArtifactError(f"tensor {name!r}: shape must be a list of non-negative integers, not {shape!r}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
            raise ArtifactError(f"tensor {name!r}: data_offsets must be two integers, not {offsets!r}")
        start, end = offsets
        dtype = np.dtype(_DTYPES[dtype_name]).newbyteorder("<")
        if not 0 <= start <= end or end - start != dtype.itemsize * math.prod(shape):
            raise ArtifactError(f"tensor {name!r}: byte range {offsets} does not match its shape {shape}")
        if end > len(body):
            raise ArtifactError(f"truncated: tensor {name!r} ends at byte {end} of a {len(body)}-byte body")
        spans.append((start, end, name, dtype, tuple(shape)))
    spans.sort()
    at = 0
    for start, end, name, _, _ in spans:
        if start != at:
            raise ArtifactError(f"tensor {name!r} starts at byte {start}, expected {at} (gap or overlap)")
        at = end
    if at != len(body):
        raise ArtifactError(f"{len(body) - at} bytes after the last tensor (appended data or a wrong header)")
    tensors = {}
    for start, end, name, dtype, shape in spans:
        if name not in sums:
            raise ArtifactError(f"no checksum for tensor {name!r}")
        raw = body[start:end]
        if hashlib.sha256(raw).hexdigest() != sums[name]:
            raise ArtifactError(f"checksum mismatch in tensor {name!r} (corrupt file)")
        tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return tensors
