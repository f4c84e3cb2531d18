"""Canonical encoding of run specs: the bytes a run's key is hashed from.

A spec is plain JSON data: ``dict`` with ``str`` keys, ``list``/``tuple``, ``str``, ``int``, finite ``float``,
``bool`` and ``None``. Anything else is rejected with a ``TypeError`` naming where it sits in the spec, because
every lenient fallback we had (``json.dumps(default=str)``) made keys lie:

- a NumPy array encoded by ``str()`` is abbreviated (``[0 0 ... 0]``), so a 2,000-element array changed in one
  element kept its key;
- a ``set`` iterates in hash order, which for strings changes with ``PYTHONHASHSEED``, so the key changed from one
  process to the next;
- ``{1: ...}`` and ``{'1': ...}`` both became ``{"1": ...}``.

NumPy *scalars* (``np.int64(3)``, ``np.float32(0.5)``, ``np.bool_``) are accepted and encoded as the Python
number they equal, since they carry no more information than that; arrays are not (put them in a file and
reference its checksum). Floats are encoded by ``repr`` (shortest round-trip), NaN and infinities are rejected.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from typing import Any

__all__ = ["canonical", "canonical_bytes", "digest", "normalise"]


def normalise(obj: Any, where: str = "spec") -> Any:
    """``obj`` as plain JSON data (tuples become lists, NumPy scalars Python numbers), or a ``TypeError``
    naming the offending path, e.g. ``spec['train']['sizes'][2]``."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has the key {k!r} of type {type(k).__name__}; spec keys must be str "
                                f"(an int key would collide with its str form in JSON)")
            out[k] = normalise(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [normalise(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    type_name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if type_name.startswith("numpy.") and getattr(obj, "shape", None) == () and not hasattr(obj, "__len__"):
        return normalise(obj.item(), where)  # a NumPy scalar: the Python number it equals
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise TypeError(f"{where} is {obj!r}; spec floats must be finite")
        return obj
    raise TypeError(f"{where} is a {type_name} ({obj!r:.80}); specs hold only JSON data (dict with str keys, "
                    f"list, str, int, finite float, bool, None): store arrays in files and reference them")


def canonical(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no whitespace, floats by shortest ``repr``."""
    return json.dumps(normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_bytes(obj: Any) -> bytes:
    return canonical(obj).encode("ascii")


def digest(obj: Any, length: int = 24) -> str:
    """Hex SHA-256 prefix of the canonical encoding of ``obj``."""
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()[:length]
