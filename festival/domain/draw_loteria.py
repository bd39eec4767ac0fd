"""Loteria Federal mode: winners read from the five main prizes of a Loteria Federal extraction.

Brazilian commercial promotions commonly take their winning number from the Loteria Federal, so the
result cannot depend on anything the operator controls. The rules here (docs/draws.md repeats them):

1. Base number within a series: the units digit of the 1st to the 5th prize, read top to bottom.
   50366, 33514, 45504, 94365, 51105 give 6, 4, 4, 5, 5, so the base number is 64455.
2. Series (only when the draw has more than one): the tens digits of the 1st, 2nd, … prize, read
   top to bottom. It takes as many digits as the last series index has: one up to 10 series, two
   up to 100, three up to 1,000. A value that is not a series of the draw is reduced modulo the
   series count. With the example above and 20 series, the tens digits 6 and 1 give series 61,
   and 61 mod 20 = 1. The base number is then series × 100,000 + the 5-digit number.
3. Approximation: if nobody holds the base number, the prize goes to the nearest number held above
   it and, if there is none above, to the nearest held below it.
4. Several prizes: the 1st prize takes the first candidate; the next prizes take the following
   candidates, in this order: the numbers held from the base upwards, then the numbers held below
   the base going downwards. Each number wins once.
"""

from collections.abc import Sequence

import numpy as np

from festival.domain.draws import Snapshot, Winner
from festival.domain.lucky_numbers import SERIES_SIZE

PRIZE_COUNT = 5


class LoteriaResultError(ValueError):
    """The Loteria Federal results are not five 5-digit numbers."""


def normalise_results(results: Sequence[str | int]) -> list[str]:
    """Return the five prizes as 5-digit strings, accepting "50.366" and integers such as 5036."""
    if len(results) != PRIZE_COUNT:
        raise LoteriaResultError(f"expected the {PRIZE_COUNT} main prizes of the Loteria Federal, got {len(results)}")

    normalised = []
    for position, value in enumerate(results, start=1):
        text = f"{value:05d}" if isinstance(value, int) and value >= 0 else str(value).strip().replace(".", "")
        if len(text) != 5 or not text.isdigit():
            raise LoteriaResultError(f"invalid {position}º prize {value!r}: expected a 5-digit number")
        normalised.append(text)

    return normalised


def _series_digits(series: int) -> int:
    return 0 if series == 1 else len(str(series - 1))


def base_number(results: Sequence[str | int], series: int) -> int:
    """Return the number that the results point at in a draw of `series` series (rules 1 and 2)."""
    prizes = normalise_results(results)
    within = int("".join(prize[-1] for prize in prizes))

    digits = _series_digits(series)
    series_index = int("".join(prize[-2] for prize in prizes[:digits])) % series if digits else 0

    return series_index * SERIES_SIZE + within


def loteria_winners(results: Sequence[str | int], series: int, snapshot: Snapshot, prize_count: int) -> list[Winner]:
    """Apply rules 3 and 4: the prizes go to the held numbers nearest the base number, upwards first."""
    if prize_count < 0:
        raise ValueError(f"prize_count must not be negative, got {prize_count}")
    base = base_number(results, series)
    numbers = snapshot.numbers
    wanted = min(prize_count, snapshot.count)

    split = int(np.searchsorted(numbers, np.uint64(base), side="left"))
    upwards = numbers[split : split + wanted]
    downwards = numbers[max(0, split - (wanted - upwards.size)) : split][::-1]
    chosen = np.concatenate([upwards, downwards])

    return [Winner(position=position, number=int(number)) for position, number in enumerate(chosen, start=1)]
