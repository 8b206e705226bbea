"""The statistics every comparison table uses (course_lib.uncertainty)."""

import statistics

import pytest

from course_lib import uncertainty as u


def test_spread_matches_statistics_and_scipy():
    xs = [6.50, 6.54, 6.98]
    s = u.spread(xs)
    assert s.mean == pytest.approx(statistics.fmean(xs))
    assert s.sd == pytest.approx(statistics.stdev(xs))
    # t(0.975, 2) = 4.303: the half width is t * sd / sqrt(n)
    assert s.half_width == pytest.approx(4.3027 * s.sd / 3**0.5, rel=1e-3)


def test_differs_only_outside_the_noise():
    assert not u.differs([6.50, 6.54, 6.98], [6.60, 6.45, 6.90])
    assert u.differs([1.0, 1.1, 0.9, 1.05], [2.0, 2.1, 1.95, 2.05])
    assert "within noise" in u.verdict([6.50, 6.54, 6.98], [6.60, 6.45, 6.90])
    assert "B higher" in u.verdict([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    flags = [1] * 68 + [0] * 32
    lo, hi = u.bootstrap_interval(flags)
    assert lo < 0.68 < hi and hi - lo == pytest.approx(0.18, abs=0.04)
    assert u.bootstrap_interval(flags) == (lo, hi)


@pytest.mark.parametrize("bad", [[1.0], [], "123", [1.0, float("nan")]])
def test_bad_inputs_say_what_is_wrong(bad):
    with pytest.raises((TypeError, ValueError)):
        u.spread(bad)
