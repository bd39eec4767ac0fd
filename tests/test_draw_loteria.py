"""Loteria Federal mode: the base number, the approximation rule and several prizes."""

import pytest

from festival.domain.draw_loteria import LoteriaResultError, base_number, loteria_winners, normalise_results
from festival.domain.draws import Winner, freeze_numbers

EXAMPLE = ["50366", "33514", "45504", "94365", "51105"]


def test_base_number_worked_example() -> None:
    assert base_number(EXAMPLE, 1) == 64455


def test_base_number_series_from_tens_digits() -> None:
    # Tens digits 6 and 1 give series 61; 61 mod 20 = 1.
    assert base_number(EXAMPLE, 20) == 1 * 100_000 + 64455


def test_base_number_series_in_range_kept() -> None:
    assert base_number(EXAMPLE, 100) == 61 * 100_000 + 64455


def test_base_number_three_series_digits() -> None:
    # Tens digits 6, 1 and 0 give series 610 in a draw of 1,000 series.
    assert base_number(EXAMPLE, 1000) == 610 * 100_000 + 64455


def test_base_number_single_digit_series() -> None:
    assert base_number(EXAMPLE, 10) == 6 * 100_000 + 64455


def test_normalise_accepts_dots_and_integers() -> None:
    assert normalise_results(["50.366", 3514, "45504", "94365", "51105"]) == [
        "50366", "03514", "45504", "94365", "51105",
    ]


@pytest.mark.parametrize(
    "results",
    [EXAMPLE[:4], EXAMPLE + ["12345"], ["5036", *EXAMPLE[1:]], ["5036x", *EXAMPLE[1:]], [-1, *EXAMPLE[1:]]],
)
def test_normalise_rejects_invalid(results: list[str | int]) -> None:
    with pytest.raises(LoteriaResultError):
        normalise_results(results)


def test_winner_exact_number_held() -> None:
    snapshot = freeze_numbers([100, 64455, 90000])
    assert loteria_winners(EXAMPLE, 1, snapshot, 1) == [Winner(1, 64455)]


def test_winner_next_higher_when_not_held() -> None:
    snapshot = freeze_numbers([100, 64000, 64460, 90000])
    assert loteria_winners(EXAMPLE, 1, snapshot, 1) == [Winner(1, 64460)]


def test_winner_next_lower_when_none_higher() -> None:
    snapshot = freeze_numbers([100, 64000])
    assert loteria_winners(EXAMPLE, 1, snapshot, 1) == [Winner(1, 64000)]


def test_several_prizes_upwards_then_downwards() -> None:
    snapshot = freeze_numbers([10, 64000, 64455, 70000, 99999])
    winners = loteria_winners(EXAMPLE, 1, snapshot, 5)
    assert [winner.number for winner in winners] == [64455, 70000, 99999, 64000, 10]
    assert [winner.position for winner in winners] == [1, 2, 3, 4, 5]


def test_fewer_entries_than_prizes() -> None:
    snapshot = freeze_numbers([5, 70000])
    assert loteria_winners(EXAMPLE, 1, snapshot, 4) == [Winner(1, 70000), Winner(2, 5)]


def test_no_entries() -> None:
    assert loteria_winners(EXAMPLE, 1, freeze_numbers([]), 3) == []


def test_winner_in_other_series_by_approximation() -> None:
    # Base 1-64455 with 20 series; no number of series 1 from 64455 on is held, so series 2 wins.
    snapshot = freeze_numbers([50_000, 2 * 100_000 + 3])
    assert loteria_winners(EXAMPLE, 20, snapshot, 1) == [Winner(1, 200_003)]
