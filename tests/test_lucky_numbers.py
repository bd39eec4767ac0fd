"""Lucky numbers: the keyed permutation of the number space and the display format."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from festival.domain.lucky_numbers import format_number, number_space, parse_number, permute, unpermute

keys = st.binary(min_size=1, max_size=64)


@given(key=keys, space=st.integers(min_value=1, max_value=600))
@settings(max_examples=60, deadline=None)
def test_permute_bijective_small_space(key: bytes, space: int) -> None:
    numbers = {permute(key, space, index) for index in range(space)}
    assert numbers == set(range(space))


@given(key=keys, space=st.integers(min_value=1, max_value=10**8), data=st.data())
@settings(max_examples=200, deadline=None)
def test_permute_deterministic(key: bytes, space: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=space - 1))
    assert permute(key, space, index) == permute(key, space, index)


@given(key=keys, series=st.integers(min_value=1, max_value=1000), data=st.data())
@settings(max_examples=200, deadline=None)
def test_unpermute_inverts(key: bytes, series: int, data: st.DataObject) -> None:
    space = number_space(series)
    index = data.draw(st.integers(min_value=0, max_value=space - 1))
    number = permute(key, space, index)
    assert 0 <= number < space
    assert unpermute(key, space, number) == index


def test_permute_full_series_bijective() -> None:
    space = number_space(1)
    numbers = {permute(b"draw-key", space, index) for index in range(space)}
    assert len(numbers) == space


def test_permute_depends_on_key() -> None:
    space = number_space(1)
    first = [permute(b"key-one", space, index) for index in range(50)]
    second = [permute(b"key-two", space, index) for index in range(50)]
    assert first != second


def test_permute_spreads_numbers() -> None:
    # 20,000 consecutive indices over 10 equal buckets: each should get about 2,000 numbers.
    # The chi-square statistic has 9 degrees of freedom; 40 is far beyond its 99.99th percentile (~33.7).
    space = number_space(10)
    issued = 20_000
    buckets = [0] * 10
    for index in range(issued):
        buckets[permute(b"spread", space, index) * 10 // space] += 1

    expected = issued / 10
    chi_square = sum((count - expected) ** 2 / expected for count in buckets)
    assert chi_square < 40


def test_permute_consecutive_indices_not_adjacent() -> None:
    space = number_space(1)
    numbers = [permute(b"gaps", space, index) for index in range(1_000)]
    gaps = [abs(later - earlier) for earlier, later in zip(numbers, numbers[1:])]
    assert sum(gap < 100 for gap in gaps) < 10


def test_permute_rejects_index_out_of_space() -> None:
    with pytest.raises(ValueError, match="index"):
        permute(b"key", 100, 100)


def test_permute_rejects_empty_key() -> None:
    with pytest.raises(ValueError, match="key"):
        permute(b"", 100, 1)


@pytest.mark.parametrize(
    ("number", "series", "text"),
    [(42, 1, "00-00042"), (1_234_567, 20, "12-34567"), (99_999_999, 1000, "999-99999"), (5, 1000, "000-00005")],
)
def test_format_number(number: int, series: int, text: str) -> None:
    assert format_number(number, series) == text


def test_format_number_rejects_outside_space() -> None:
    with pytest.raises(ValueError, match="number must be in"):
        format_number(100_000, 1)


@pytest.mark.parametrize(("text", "number"), [("00-00042", 42), ("12-34567", 1_234_567), ("1234567", 1_234_567)])
def test_parse_number(text: str, number: int) -> None:
    assert parse_number(text, 20) == number


@pytest.mark.parametrize("text", ["12-345", "ab-12345", "", "20-00000"])
def test_parse_number_rejects_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text, 20)
