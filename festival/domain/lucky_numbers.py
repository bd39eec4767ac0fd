"""Lucky numbers: a keyed permutation of a draw's number space, and how a number is displayed.

A draw's number space is [0, N) with N = series × 100,000. The k-th number issued in a draw is
`permute(key, N, k)` for k = 0, 1, 2, … . Because `permute` is a bijection of [0, N), distinct
indices give distinct numbers, so numbers are unique within a draw by construction: there is no
collision check, no retry and no cycle walking. The secret key spreads consecutive indices over
the whole space, so a number reveals nothing about when it was issued.

Construction: an alternating Feistel network over Z_a × Z_b with a·b = N and an even number of
rounds. Round r splits x into a high part L and a low part R, with R in Z_lo and L in Z_hi, where
(hi, lo) is (a, b) on even rounds and (b, a) on odd rounds:

    L, R = divmod(x, lo)
    x    = R · hi + (L + F(r, R)) mod hi

The new x keeps R as its high digit (radix hi), so the next round splits with the roles of a and b
swapped. Each round is invertible (see `unpermute`), so the whole network is a permutation.
F(r, R) is the first 8 bytes, big-endian, of HMAC-SHA256(key, b"festival.lucky-number.v1" ||
u8 r || u64 N || u64 R), reduced modulo hi. The reduction has a bias below hi / 2^64, which only
affects how random the permutation looks, never whether it is one.

a is the largest divisor of N not above √N, which balances the two halves (250 × 400 for one
series). A prime N gives a = 1 and a permutation that is only a rotation: real draws never have
one, because N is a multiple of 100,000.
"""

import hmac
import math
from functools import lru_cache

SERIES_SIZE = 100_000
ROUNDS = 8
_ROUND_LABEL = b"festival.lucky-number.v1"


def number_space(series: int) -> int:
    """Return N, the count of numbers in a draw with `series` series."""
    if series < 1:
        raise ValueError(f"series must be at least 1, got {series}")
    return series * SERIES_SIZE


@lru_cache(maxsize=64)
def _split(space: int) -> tuple[int, int]:
    """Return (a, b) with a·b = space and a the largest divisor of space not above its square root."""
    for a in range(math.isqrt(space), 0, -1):
        if space % a == 0:
            return a, space // a
    raise AssertionError(space)


def _round_value(key: bytes, round_index: int, space: int, half: int, modulus: int) -> int:
    message = _ROUND_LABEL + round_index.to_bytes(1, "big") + space.to_bytes(8, "big") + half.to_bytes(8, "big")
    digest = hmac.digest(key, message, "sha256")
    return int.from_bytes(digest[:8], "big") % modulus


def _check(key: bytes, space: int, value: int, name: str) -> None:
    if not key:
        raise ValueError("the permutation key must not be empty")
    if space < 1:
        raise ValueError(f"space must be at least 1, got {space}")
    if not 0 <= value < space:
        raise ValueError(f"{name} must be in [0, {space}), got {value}")


def permute(key: bytes, space: int, index: int) -> int:
    """Map `index` in [0, space) to its number under the permutation keyed by `key`."""
    _check(key, space, index, "index")
    a, b = _split(space)
    x = index

    for round_index in range(ROUNDS):
        hi, lo = (a, b) if round_index % 2 == 0 else (b, a)
        left, right = divmod(x, lo)
        x = right * hi + (left + _round_value(key, round_index, space, right, hi)) % hi

    return x


def unpermute(key: bytes, space: int, number: int) -> int:
    """Return the index whose number is `number`: the inverse of `permute`."""
    _check(key, space, number, "number")
    a, b = _split(space)
    x = number

    for round_index in reversed(range(ROUNDS)):
        hi, lo = (a, b) if round_index % 2 == 0 else (b, a)
        right, mixed = divmod(x, hi)
        left = (mixed - _round_value(key, round_index, space, right, hi)) % hi
        x = left * lo + right

    return x


def _series_width(series: int) -> int:
    return max(2, len(str(series - 1)))


def format_number(number: int, series: int) -> str:
    """Format a number as `SS-NNNNN`: series index, a hyphen, and the 5-digit number within the series.

    The series index has at least two digits and as many as the draw's last series needs, so every
    number of a draw has the same width. Examples: 1234567 in a draw of 20 series is "12-34567",
    42 in a draw of one series is "00-00042", and 5 in a draw of 1,000 series is "000-00005".
    """
    space = number_space(series)
    if not 0 <= number < space:
        raise ValueError(f"number must be in [0, {space}) for {series} series, got {number}")
    series_index, within = divmod(number, SERIES_SIZE)
    return f"{series_index:0{_series_width(series)}d}-{within:05d}"


def parse_number(text: str, series: int) -> int:
    """Parse a number written as `format_number` writes it (or as plain digits) back to an integer."""
    cleaned = text.strip()
    if "-" in cleaned:
        series_part, _, within_part = cleaned.partition("-")
        if not (series_part.isdigit() and within_part.isdigit() and len(within_part) == 5):
            raise ValueError(f"invalid lucky number {text!r}: expected SS-NNNNN")
        number = int(series_part) * SERIES_SIZE + int(within_part)
    elif cleaned.isdigit():
        number = int(cleaned)
    else:
        raise ValueError(f"invalid lucky number {text!r}: expected SS-NNNNN or digits")

    space = number_space(series)
    if number >= space:
        raise ValueError(f"lucky number {text!r} is outside the {series} series of this draw")
    return number
