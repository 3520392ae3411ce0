"""Homomorphic encryption of model updates: CKKS with TenSEAL, the way NVIDIA FLARE does it.

One CKKS context per consortium (N = 8192, coefficient moduli [60, 40, 40] bits, scale 2^40).
Every institution holds the same *secret* context; the server gets a *public* one (no secret
key), with which it can add ciphertexts but not read them. An institution multiplies its model by
its aggregation weight before encrypting, so the sum the server computes is the weighted average,
still encrypted; the institutions decrypt it. CKKS is approximate: errors are around 1e-7 of the
values' scale (measured below 1e-9 for model parameters).

The guarantee holds against a server that does not collude with an institution: institutions share
one key, so an institution that saw another's ciphertext could read it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from consortia.errors import ConfigError

POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = (60, 40, 40)
SCALE_BITS = 40
#: CKKS packs N/2 values into one ciphertext; longer vectors are split (TenSEAL prints a C++ warning
#: Python cannot silence when a vector is longer than its slots)
SLOTS = POLY_MODULUS_DEGREE // 2


def _tenseal():  # imported on first use: runs without HE never load it
    try:
        import tenseal
    except ImportError as exc:  # pragma: no cover - tenseal is a dependency
        raise ConfigError("homomorphic encryption needs TenSEAL: pip install tenseal") from exc
    return tenseal


def make_secret_context() -> bytes:
    """A new consortium key: the serialized context with its secret key (institutions only)."""
    ts = _tenseal()
    context = ts.context(
        ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY_MODULUS_DEGREE, coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES)
    )
    context.global_scale = 2**SCALE_BITS
    return bytes(context.serialize(save_secret_key=True))


def public_context(secret: bytes) -> bytes:
    """What the server may hold: the same context without the secret key (and no relinearisation
    keys: the server only adds, so they would be 660 KB of nothing)."""
    context = load_context(secret)
    return bytes(context.serialize(save_secret_key=False, save_relin_keys=False, save_galois_keys=False))


@functools.lru_cache(maxsize=8)
def load_context(blob: bytes):
    """A TenSEAL context from its serialized form (cached: deserializing costs milliseconds)."""
    ts = _tenseal()
    try:
        return ts.context_from(blob)
    except Exception as exc:
        raise ConfigError(f"not a TenSEAL CKKS context ({type(exc).__name__}: {exc})") from None


def read_secret_context(path: str | Path) -> bytes:
    """An institution's key file (``consortia serve certs`` writes one per consortium), read once
    per file version: every train, evaluate and fine-tune message needs it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"HE key file {file} does not exist (make it with `consortia serve certs`)")
    stat = file.stat()
    return _read_secret(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_secret(path: str, mtime_ns: int, size: int) -> bytes:
    blob = Path(path).read_bytes()
    if not load_context(blob).is_private():
        raise ConfigError(f"HE key file {path} holds no secret key: it is the server's public context")
    return blob


def write_key_pair(folder: str | Path) -> tuple[Path, Path]:
    """``he-secret.ctx`` (every institution's) and ``he-public.ctx`` (the server's) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    secret = make_secret_context()
    secret_path, public_path = folder / "he-secret.ctx", folder / "he-public.ctx"
    secret_path.write_bytes(secret)
    secret_path.chmod(0o600)
    public_path.write_bytes(public_context(secret))
    return secret_path, public_path


def encrypt(context_blob: bytes, values: np.ndarray, weight: float = 1.0) -> list[bytes]:
    """``weight * values`` as CKKS ciphertexts of at most ``SLOTS`` values each."""
    ts = _tenseal()
    context = load_context(context_blob)
    flat = np.asarray(values, dtype=np.float64).ravel() * weight
    return [
        bytes(ts.ckks_vector(context, flat[i : i + SLOTS].tolist()).serialize())
        for i in range(0, max(flat.size, 1), SLOTS)
    ]


def add(context_blob: bytes, parts: Sequence[Sequence[bytes]]) -> list[bytes]:
    """The element-wise sum of several institutions' ciphertexts; needs no secret key."""
    if not parts:
        raise ValueError("nothing to add")
    ts = _tenseal()
    context = load_context(context_blob)
    lengths = {len(p) for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"ciphertext lists of different lengths: {sorted(lengths)}")
    total = [ts.ckks_vector_from(context, blob) for blob in parts[0]]
    for part in parts[1:]:
        for i, blob in enumerate(part):
            total[i] = total[i] + ts.ckks_vector_from(context, blob)
    return [bytes(vector.serialize()) for vector in total]


def decrypt(context_blob: bytes, blobs: Sequence[bytes], size: int) -> np.ndarray:
    """The plaintext of ``encrypt``'s output (the first ``size`` values); needs the secret key."""
    ts = _tenseal()
    context = load_context(context_blob)
    if not context.is_private():
        raise ConfigError("decrypting needs the institutions' secret HE context; this one is public")
    values = np.concatenate([np.asarray(ts.ckks_vector_from(context, b).decrypt(), dtype=np.float64) for b in blobs])
    return values[:size]


def flatten(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[list[int]]]:
    """Model arrays as one vector and their shapes (shapes are not secret: the model's layout)."""
    shapes = [list(np.shape(a)) for a in arrays]
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
    return flat, shapes


def unflatten(flat: np.ndarray, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape)) if len(shape) else 1
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out
