"""Result types and input checks shared by every module of :mod:`domaingap.stats`.

Conventions (all of ``domaingap.stats``):

- Samples are 1-D array-likes (lists, NumPy arrays, pandas Series) of finite floats. A NaN or infinity is never
  dropped silently: it raises :class:`ValueError` naming its positions, so the caller drops it on purpose.
- Confidence intervals are two-sided at ``level`` even when the test is one-sided (``alternative``), so the
  interval and the estimate read the same whatever the test.
- ``unit`` names what one observation is (``"datasets"``, ``"seeds"``, ``"runs"``); it only enters summaries,
  e.g. ``n = 4 vs 3 datasets``.
- A quantity that the data cannot give is either a :class:`ValueError` quoting the offending input (stand-alone
  functions) or a :class:`NotComputable` with its reason (a part of a bundled comparison), never a NaN.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class StatResult:
    """One estimate with its interval and, when there is one, its test.

    Fields that a result does not have are ``None`` (e.g. ``p`` of a bootstrap interval, ``low``/``high`` of a
    test that comes without an interval), never NaN.
    """

    test: str  # test or method, e.g. "Mann-Whitney U (exact)"
    estimand: str  # what `estimate` is, e.g. "AUC", "mean difference (a - b)"
    estimate: float
    low: float | None = None  # two-sided CI at `level`
    high: float | None = None
    level: float | None = None
    ci_method: str = ""  # e.g. "BCa bootstrap (2000 resamples)"
    p: float | None = None
    alternative: str | None = None
    statistic: float | None = None  # the test statistic (U, t, W+, ...)
    n: tuple[int, ...] = ()  # observations per side
    unit: str = ""
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # test-specific numbers, e.g. df, rank-biserial

    computable = True

    @property
    def ci(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            raise ValueError(f"{self.test} gives no confidence interval for {self.estimand}")
        return self.low, self.high

    def summary(self, digits: int = 3) -> str:
        """One line for a claims record, e.g. ``AUC = 0.75 [0.32, 1] (95% Brunner-Munzel t CI); Mann-Whitney U
        (exact) two-sided p = 0.629; n = 4 vs 3 datasets``."""
        f = f"{{:.{digits}g}}".format
        text = f"{self.estimand} = {f(self.estimate)}"
        if self.low is not None and self.high is not None:
            text += f" [{f(self.low)}, {f(self.high)}] ({self.level:.0%} {self.ci_method})"
        if self.p is not None:
            text += f"; {self.test} {self.alternative} p = {f(self.p)}"
        elif not self.ci_method:
            text += f" ({self.test})"
        return text + f"; {format_n(self.n, self.unit)}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NotComputable:
    """A part of a comparison that these data cannot give, with the reason (instead of a NaN)."""

    test: str
    reason: str
    n: tuple[int, ...] = ()
    unit: str = ""

    computable = False

    def summary(self, digits: int = 3) -> str:
        return f"{self.test}: not computable ({self.reason}); {format_n(self.n, self.unit)}"


def ci_text(result: "StatResult", spec: str = ".3g", scale: float = 1.0) -> str:
    """``"[low, high]"`` of a result's CI formatted with ``spec`` (values times ``scale``), or the reason there is
    none (e.g. a signed-rank test with fewer than 6 pairs has no 95% interval): never a crash on None."""
    if result.low is None or result.high is None:
        return f"[no {result.level or 0.95:.0%} interval at {format_n(result.n, result.unit)}]"
    return f"[{result.low * scale:{spec}}, {result.high * scale:{spec}}]"


def format_n(n: tuple[int, ...], unit: str = "") -> str:
    return ("n = " + " vs ".join(str(k) for k in n) + (f" {unit}" if unit else "")) if n else "n = ?"


def _show(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:.6g}" for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def as_sample(values: Any, name: str, *, min_n: int = 1) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite numbers with at least ``min_n`` entries, else ValueError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {values!r:.200}") from err
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} has non-finite values {_show(arr[bad])} at positions {bad[:8].tolist()}: drop or "
                         f"impute them before testing")
    if arr.size < min_n:
        raise ValueError(f"{name} needs at least {min_n} values, got {arr.size}: {_show(arr)}")
    return arr


def as_pair(x: Any, y: Any, names: tuple[str, str] = ("x", "y"), *, min_n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two samples of one length (paired observations)."""
    a = as_sample(x, names[0], min_n=min_n)
    b = as_sample(y, names[1], min_n=min_n)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must be paired (same length), got {a.size} and {b.size} values")
    return a, b


def as_labels(labels: Any, name: str, length: int) -> np.ndarray:
    """Group or class labels as a 1-D array of ``length`` entries (any hashable values, e.g. str)."""
    arr = np.asarray(labels)
    if arr.shape != (length,):
        raise ValueError(f"{name} must be 1-D with one label per value ({length}), got shape {arr.shape}")
    return arr


def differences(x: Any, y: Any | None, names: tuple[str, str] = ("x", "y"), *, min_n: int = 1) -> np.ndarray:
    """Paired differences ``x - y``; with ``y=None`` ``x`` already holds the differences."""
    if y is None:
        return as_sample(x, names[0], min_n=min_n)
    a, b = as_pair(x, y, names, min_n=min_n)
    return a - b


def check_level(level: float, name: str = "level") -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"{name} must be in (0, 1), got {level!r}")
    return float(level)


def check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    return float(alpha)


def check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return alternative


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_margin(margin: float | tuple[float, float], centre: float, *, lower: float = -math.inf,
                 upper: float = math.inf) -> tuple[float, float]:
    """Equivalence bounds: a scalar ``m > 0`` means ``centre +/- m``; a pair is taken as absolute bounds."""
    if isinstance(margin, (int, float, np.floating, np.integer)) and not isinstance(margin, bool):
        if not (math.isfinite(margin) and margin > 0):
            raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
        lo, hi = centre - float(margin), centre + float(margin)
    else:
        try:
            lo, hi = (float(v) for v in margin)
        except (TypeError, ValueError) as err:
            raise ValueError(f"margin must be a number > 0 or a pair (low, high), got {margin!r}") from err
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < centre < hi):
            raise ValueError(f"margin bounds must be finite with low < {centre} < high, got {margin!r}")
    if lo < lower or hi > upper:
        raise ValueError(f"equivalence bounds ({lo:g}, {hi:g}) fall outside the parameter's range [{lower}, {upper}]")
    return lo, hi


def distinct_messages(caught: list) -> tuple[str, ...]:
    """The distinct texts of captured warnings, in order, each led by its kind in words ("convergence: ..." for a
    ``ConvergenceWarning``): they are reported diagnostics of a fit, and the book's pages show no raw warnings."""
    def kind(category: type) -> str:
        name = category.__name__.removesuffix("Warning") or category.__name__
        return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()

    return tuple(dict.fromkeys(f"{kind(w.category)}: {w.message}" for w in caught))


def attempt(fn: Callable[[], StatResult], test: str, n: tuple[int, ...], unit: str) -> StatResult | NotComputable:
    """``fn()``, or :class:`NotComputable` with the ValueError's message when the data cannot give it (the parts
    of a bundled comparison; stand-alone functions raise)."""
    try:
        return fn()
    except ValueError as err:
        return NotComputable(test, str(err), n, unit)
