"""edge_transfer.core.stats against hand-computed values, scipy, and properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_transfer.core import stats

scipy_stats = pytest.importorskip("scipy.stats")
SETTINGS = settings(max_examples=200, deadline=None)


def test_wilson_by_hand() -> None:
    # 127/134, z = 1.959964: centre (p + z²/2n)/(1 + z²/n) = 0.935283,
    # half z sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n) = 0.039185
    iv = stats.wilson(127, 134)
    assert iv.estimate == pytest.approx(127 / 134)
    assert (iv.low, iv.high) == pytest.approx((0.896098, 0.974468), abs=2e-6)
    # 0 of 10: [0, z²/n / (1 + z²/n)] = [0, 0.27753]
    assert stats.wilson(0, 10).low == 0.0
    assert stats.wilson(0, 10).high == pytest.approx(0.384146 / 1.384146, abs=1e-6)
    assert stats.wilson(10, 10).high == 1.0


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 2), (127, 134), (4750, 5000), (3, 1000),
                                      (999, 1000), (50, 100)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    iv = stats.wilson(k, n)
    assert (iv.low, iv.high) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_mcnemar_by_hand_and_against_scipy() -> None:
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)             # 2 * 0.5**6
    assert stats.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)      # 2 * (1 + 10)/2**10
    assert stats.mcnemar_exact(3, 3) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    for b, c in [(0, 1), (2, 7), (15, 4), (150, 0), (60, 90), (400, 430), (1, 1200)]:
        assert stats.mcnemar_exact(b, c) == pytest.approx(
            scipy_stats.binomtest(b, b + c).pvalue, rel=1e-9, abs=1e-300)


def test_newcombe_paired_interval_matches_the_textbook() -> None:
    # Fagerland, Lydersen & Laake (2017) ch. 8, Cavo et al.: -0.0621 (-0.1186 to -0.0046)
    # for p1 - p2; here B - A, so the signs turn.
    cmp = stats.paired_counts(59, 6, 16, 80)
    assert cmp.difference == pytest.approx(10 / 161)
    assert (cmp.interval.low, cmp.interval.high) == pytest.approx((0.0046, 0.1186), abs=6e-5)
    assert cmp.p_value == pytest.approx(scipy_stats.binomtest(6, 22).pvalue)


def test_one_image_on_134_does_not_fail_and_3_points_on_5000_do() -> None:
    a = np.ones(134, bool)
    a[:6] = False
    b = a.copy()
    b[10] = False                                       # one image lost: -0.75 pt
    one = stats.paired(a, b)
    assert stats.decide(one, 0.005).verdict == "pass"   # beyond 0.5 pt, but p = 1
    assert stats.decide(one, 0.005, rule="point").verdict == "fail"
    assert stats.decide(one, 0.01).underpowered is not None
    rng = np.random.default_rng(0)
    a = rng.random(5000) < 0.95
    b = a.copy()
    lost = rng.choice(np.flatnonzero(a), 200, replace=False)
    gained = rng.choice(np.flatnonzero(~a), 50, replace=False)
    b[lost], b[gained] = False, True                    # -3 pt: 200 lost, 50 gained
    drop = stats.paired(a, b)
    assert drop.difference == pytest.approx(-0.03)
    decision = stats.decide(drop, 0.01)
    assert decision.verdict == "fail" and decision.underpowered is None
    assert drop.p_value < 1e-20


def test_samples_needed_by_hand() -> None:
    # Connor (1987): n = (z_a sqrt(psi) + z_b sqrt(psi - d²))² / d²
    z_a, z_b = 1.959964, 0.841621
    expected = (z_a * math.sqrt(0.05) + z_b * math.sqrt(0.05 - 0.0009)) ** 2 / 0.0009
    assert stats.samples_needed(0.03, 0.05) == math.ceil(expected)
    assert stats.samples_needed(0.03, 0.0) == stats.samples_needed(0.03, 0.03)


def test_samples_needed_is_enough_in_simulation() -> None:
    """At the size samples_needed gives, the exact test finds the drop about 80% of the time."""
    n = stats.samples_needed(0.03, 0.06)
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(400):
        cells = rng.multinomial(n, [0.045, 0.015, 0.94])   # lost, gained, agree
        found += stats.mcnemar_exact(cells[1], cells[0]) < 0.05
    assert 0.7 < found / 400 < 0.9


def test_chance_and_collapse() -> None:
    assert stats.at_chance(stats.wilson(20, 100), 5)
    assert not stats.at_chance(stats.wilson(60, 100), 5)
    assert stats.collapsed([1] * 90 + [0] * 10) == 1
    assert stats.collapsed([1] * 89 + [0] * 11) is None
    line = stats.health_warning(stats.wilson(40, 200), 5, [0] * 200, what="int8")
    assert line is not None and "chance" in line and line.startswith("int8")


counts = st.integers(0, 400)


@SETTINGS
@given(st.integers(1, 2000), st.floats(0, 1))
def test_interval_contains_the_estimate_and_narrows_with_n(n: int, share: float) -> None:
    k = round(share * n)
    iv = stats.wilson(k, n)
    assert 0.0 <= iv.low <= iv.estimate <= iv.high <= 1.0
    bigger = stats.wilson(4 * k, 4 * n)
    assert bigger.high - bigger.low < iv.high - iv.low


@SETTINGS
@given(counts, counts, counts, counts)
def test_paired_is_symmetric_and_contains_the_difference(a: int, b: int, c: int, d: int
                                                         ) -> None:
    if a + b + c + d == 0:
        return
    ab, ba = stats.paired_counts(a, b, c, d), stats.paired_counts(a, c, b, d)
    assert ab.interval.low <= ab.difference <= ab.interval.high
    assert ab.interval.low >= -1.0 and ab.interval.high <= 1.0
    assert ba.difference == pytest.approx(-ab.difference)
    assert (ba.interval.low, ba.interval.high) == pytest.approx(
        (-ab.interval.high, -ab.interval.low))
    assert ba.p_value == ab.p_value


@SETTINGS
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.data())
def test_paired_from_vectors_counts_the_cells(a: list[bool], data: st.DataObject) -> None:
    b = data.draw(st.lists(st.booleans(), min_size=len(a), max_size=len(a)))
    cmp = stats.paired(a, b)
    assert cmp.n == len(a)
    assert cmp.difference == pytest.approx((sum(b) - sum(a)) / len(a))
    assert cmp.a.estimate == pytest.approx(sum(a) / len(a))
