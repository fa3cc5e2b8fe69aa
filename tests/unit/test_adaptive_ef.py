"""The default EF_RUNTIME grows with the index: the breadth film-like frames need (bench.scale measured it)."""

from __future__ import annotations

from search_service.resolve import EF_CAP, adaptive_ef


def test_a_small_index_uses_the_configured_breadth() -> None:
    assert adaptive_ef(0, 100) == 100
    assert adaptive_ef(30_000, 100) == 310
    assert adaptive_ef(3_125, 100) == 100


def test_a_large_index_searches_wider_up_to_the_cap_and_a_wider_setting_wins() -> None:
    assert adaptive_ef(100_000, 100) == 566
    assert adaptive_ef(1_000_000, 100) == 1789
    assert adaptive_ef(10**12, 100) == EF_CAP
    assert adaptive_ef(1_000_000, 2000) == 2000
