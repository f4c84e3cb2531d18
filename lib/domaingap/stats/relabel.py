"""Calibration of a verdict rule on the book's own data: its rejection rate when the labels it tests are shuffled.

A simulated calibration (:mod:`.calibration`) assumes a data-generating model; a relabelling calibration assumes
only that the labels are exchangeable under the null. :func:`relabel_calibration` applies the rule to the real
data under every relabelling (or a seeded sample when there are too many) and returns the share that would be
called significant. It must not exceed alpha: a rule that rejects more often on shuffled labels than alpha says
treats its units as more independent than they are, or its reference distribution is wrong.

- :func:`domain_relabellings`: every assignment of the same numbers of "medical" and "natural" labels to the
  datasets (P1: 330 for 7 vs 4) - "permute the domain labels at the dataset level".
- :func:`swap_relabellings`: every pattern of swapping the two members of each block (e.g. the robust and the
  standard model of one task, all its seeds together) - "swap robust and standard models".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ._base import check_alpha
from .classifier import wilson_interval

__all__ = ["RelabelCalibration", "domain_relabellings", "relabel_calibration", "swap_relabellings"]


@dataclass(frozen=True)
class RelabelCalibration:
    """Share of relabellings (of ``n_relabellings``; every one when ``exhaustive``) on which the rule rejects."""

    what: str
    rate: float
    low: float  # 95% Wilson interval (exact count when exhaustive: low = high = rate)
    high: float
    rejections: int
    n_relabellings: int
    exhaustive: bool
    alpha: float

    @property
    def flag(self) -> str:
        """"rejects shuffled labels above alpha" when the rate (its interval's low end when sampled) > alpha."""
        return "rejects shuffled labels above alpha" if self.low > self.alpha else ""

    def summary(self) -> str:
        how = "every" if self.exhaustive else "a sample of"
        ci = "" if self.exhaustive else f" [{self.low:.3f}, {self.high:.3f}]"
        return (f"{self.what}: the rule rejects on {self.rejections} of {how} {self.n_relabellings} relabellings "
                f"({self.rate:.3f}{ci}; must be <= alpha = {self.alpha:g})")


def domain_relabellings(labels: Sequence[str], *, max_relabellings: int = 5000, seed: int = 0
                        ) -> tuple[list[np.ndarray], bool]:
    """Every arrangement of ``labels`` with the same count of each label (``C(n, n_1)`` for two labels), or
    ``max_relabellings`` seeded random permutations when there are more; and whether the list is exhaustive."""
    lab = np.asarray(labels)
    values, counts = np.unique(lab, return_counts=True)
    if values.size != 2:
        raise ValueError(f"domain_relabellings needs exactly two labels, got {values.tolist()}")
    n, k = lab.size, int(counts[0])
    if math.comb(n, k) <= max_relabellings:
        out = []
        for idx in itertools.combinations(range(n), k):
            new = np.full(n, values[1], dtype=lab.dtype)
            new[list(idx)] = values[0]
            out.append(new)
        return out, True
    rng = np.random.default_rng(seed)
    return [rng.permutation(lab) for _ in range(max_relabellings)], False


def swap_relabellings(n_blocks: int, *, max_relabellings: int = 5000, seed: int = 0
                      ) -> tuple[list[np.ndarray], bool]:
    """Every ``(n_blocks,)`` vector of +1 (keep) / -1 (swap the block's two members), ``2 ** n_blocks`` of them,
    or a seeded random sample when there are more than ``max_relabellings``; and whether it is exhaustive."""
    if n_blocks < 1:
        raise ValueError(f"swap_relabellings needs >= 1 block, got {n_blocks}")
    if 2 ** n_blocks <= max_relabellings:
        return [np.array(s, dtype=float) for s in itertools.product((1.0, -1.0), repeat=n_blocks)], True
    rng = np.random.default_rng(seed)
    return [rng.choice((1.0, -1.0), n_blocks) for _ in range(max_relabellings)], False


def relabel_calibration(what: str, decide: Callable[[np.ndarray], bool],
                        relabellings: tuple[list[np.ndarray], bool] | Iterator, *, alpha: float = 0.05
                        ) -> RelabelCalibration:
    """Apply ``decide(relabelling) -> rejects?`` to every relabelling of :func:`domain_relabellings` or
    :func:`swap_relabellings` (the pair they return). The identity relabelling is among them, so the observed
    data count once, as in a permutation test."""
    check_alpha(alpha)
    items, exhaustive = relabellings
    if not items:
        raise ValueError("relabel_calibration needs at least one relabelling")
    hits = sum(bool(decide(r)) for r in items)
    n = len(items)
    if exhaustive:
        low = high = hits / n
    else:
        w = wilson_interval(hits, n)
        low, high = w.low, w.high
    return RelabelCalibration(what=what, rate=hits / n, low=float(low), high=float(high), rejections=int(hits),
                              n_relabellings=n, exhaustive=bool(exhaustive), alpha=alpha)
