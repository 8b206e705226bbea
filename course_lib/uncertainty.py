"""How sure is a number? Spread over seeds, intervals, and when a difference is a finding.

Taught in chapter 02 (standard errors) and used by every comparison from chapter 01 on
(COURSE_DESIGN §10): a table row is `Spread` over ≥ 3 seeds, a plot carries its interval, and a
difference is claimed only when `differs` says it is outside the noise.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

from scipy import stats as _stats


def _numbers(values, what: str = "values", least: int = 1) -> list[float]:
    """Check that `values` is a sequence of at least `least` finite numbers."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{what} must be a sequence of numbers (one per seed), not {values!r}")
    out = [float(v) for v in values]
    if len(out) < least:
        raise ValueError(f"{what} needs at least {least} numbers, got {len(out)}: run more seeds")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} contains a NaN or infinity: {out}")
    return out


@dataclass(frozen=True)
class Spread:
    """Mean, sample sd and a 95 % interval of a metric over seeds (or over items)."""

    mean: float
    sd: float
    n: int
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        """Half the interval's width: the ± to print."""
        return (self.hi - self.lo) / 2

    def __str__(self) -> str:
        return (
            f"{self.mean:.3g} ± {self.sd:.2g} sd (n={self.n}, 95% CI {self.lo:.3g}–{self.hi:.3g})"
        )

    def fmt(self, digits: int = 3) -> str:
        """'mean ± sd' with `digits` decimals, for tables."""
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of a few seeds (taught in chapter 02)."""
    xs = _numbers(values, least=2)
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    m, sd = statistics.fmean(xs), statistics.stdev(xs)
    half = _stats.t.ppf(0.5 + level / 2, len(xs) - 1) * sd / math.sqrt(len(xs))
    return m - half, m + half


def spread(values: Sequence[float], level: float = 0.95) -> Spread:
    """`Spread` of a metric over seeds: mean, sd, and the t interval of the mean."""
    xs = _numbers(values, least=2)
    lo, hi = t_interval(xs, level)
    return Spread(statistics.fmean(xs), statistics.stdev(xs), len(xs), lo, hi)


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[list[float]], float] = statistics.fmean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over items (e.g. per-question 0/1 scores)."""
    xs = _numbers(values, least=2)
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot} is too few resamples for a stable interval; use ≥ 1000")
    rng = random.Random(seed)
    boots = sorted(statistic(rng.choices(xs, k=len(xs))) for _ in range(n_boot))
    k = int(round((1 - level) / 2 * n_boot))
    return boots[k], boots[n_boot - 1 - k]


def difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Spread:
    """Welch interval of mean(a) − mean(b) for two independent sets of seeds."""
    xa, xb = _numbers(a, "a", 2), _numbers(b, "b", 2)
    va, vb = statistics.variance(xa) / len(xa), statistics.variance(xb) / len(xb)
    d, se = statistics.fmean(xa) - statistics.fmean(xb), math.sqrt(va + vb)
    if se == 0:
        return Spread(d, 0.0, len(xa) + len(xb), d, d)
    dof = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = _stats.t.ppf(0.5 + level / 2, dof) * se
    return Spread(d, se, len(xa) + len(xb), d - half, d + half)


def differs(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> bool:
    """True when the interval of mean(a) − mean(b) excludes zero: a finding, not noise."""
    d = difference(a, b, level)
    return d.lo > 0 or d.hi < 0


def verdict(a: Sequence[float], b: Sequence[float], names: tuple[str, str] = ("A", "B")) -> str:
    """One sentence for the prose: which is higher, or 'within noise'."""
    d = difference(a, b)
    if d.lo <= 0 <= d.hi:
        return (
            f"{names[0]} − {names[1]} = {d.mean:+.3g} (95% CI {d.lo:+.3g} to {d.hi:+.3g}): "
            "within noise"
        )
    higher = names[0] if d.mean > 0 else names[1]
    return f"{names[0]} − {names[1]} = {d.mean:+.3g} (95% CI {d.lo:+.3g} to {d.hi:+.3g}): {higher} higher"
