"""Draw rules: the seed commitment, the frozen entry snapshot and the random winner selection.

All functions are pure (no I/O), so the draws consumer, the audit endpoint, `festival draw verify`
and the tests run the same code. docs/draws.md states each algorithm byte for byte.

- Seed: 32 random bytes, written as 64 lowercase hex digits. Commitment: SHA-256 of the 32 raw
  bytes, as hex, published when the draw is created; the seed is revealed after the draw.
- Snapshot: the numbers not voided at cut-off, sorted ascending, each as an unsigned 64-bit
  big-endian integer; its hash is the SHA-256 of that concatenation.
- Winners: for prize position p = 1, 2, …, an index drawn uniformly among the entries not drawn
  yet, from HMAC-SHA256(seed, snapshot hash || u32 p || u32 counter) with rejection sampling.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SEED_BYTES = 32
_U64 = 1 << 64

NumberArray = npt.NDArray[np.uint64]


class SnapshotError(ValueError):
    """The entries cannot form a snapshot: a number is negative, repeated or not an integer."""

    def __init__(self, message: str, number: int | None = None) -> None:
        super().__init__(message)
        self.number = number


@dataclass(frozen=True)
class Entry:
    """A lucky number at cut-off and the subscription that owns it."""

    number: int
    subscription_ref: str
    voided: bool = False


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The frozen entries of a draw: unique numbers sorted ascending, and the SHA-256 of their canonical bytes."""

    numbers: NumberArray
    sha256: str

    @property
    def count(self) -> int:
        return int(self.numbers.size)


@dataclass(frozen=True, order=True)
class Winner:
    """The number drawn for a prize position (1 is the first prize)."""

    position: int
    number: int


def new_seed() -> str:
    """Generate a draw seed: 32 bytes from the operating system's CSPRNG, as hex."""
    return secrets.token_hex(SEED_BYTES)


def seed_bytes(seed: str) -> bytes:
    """Decode a seed written as 64 hex digits, raising ValueError on anything else."""
    if len(seed) != 2 * SEED_BYTES:
        raise ValueError(f"invalid seed: expected {2 * SEED_BYTES} hex digits, got {len(seed)} characters")
    try:
        return bytes.fromhex(seed)
    except ValueError as error:
        raise ValueError("invalid seed: it contains characters other than hex digits") from error


def commitment(seed: str) -> str:
    """Return the public commitment of a seed: the SHA-256 of its 32 raw bytes, as lowercase hex."""
    return hashlib.sha256(seed_bytes(seed)).hexdigest()


def snapshot_bytes(numbers: NumberArray) -> bytes:
    """Return the canonical serialisation of sorted numbers: each one as 8 bytes, big-endian."""
    return numbers.astype(">u8", copy=False).tobytes()


def freeze_numbers(numbers: npt.ArrayLike) -> Snapshot:
    """Freeze the numbers of the non-voided entries into a snapshot, in any input order."""
    array = np.asarray(numbers)
    if array.size == 0:
        array = np.empty(0, dtype=np.uint64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise SnapshotError(f"numbers must be a flat sequence of integers, got {array.dtype} with shape {array.shape}")
    if array.dtype.kind == "i" and array.size and int(array.min()) < 0:
        smallest = int(array.min())
        raise SnapshotError(f"numbers must not be negative, got {smallest}", number=smallest)

    # astype copies, so sorting in place leaves the caller's array untouched.
    ordered = array.astype(np.uint64)
    ordered.sort()

    repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
    if repeated.size:
        duplicate = int(ordered[repeated[0]])
        raise SnapshotError(f"number {duplicate} appears more than once", number=duplicate)

    digest = hashlib.sha256(snapshot_bytes(ordered)).hexdigest()
    return Snapshot(numbers=ordered, sha256=digest)


def freeze_bytes(data: bytes) -> Snapshot:
    """Freeze numbers given as 8-byte big-endian integers in any order, as PostgreSQL's int8send writes them.

    Sorting here is much faster than an ORDER BY inside the aggregate that produces the bytes.
    """
    if len(data) % 8:
        raise SnapshotError(f"entry bytes must be a multiple of 8 long, got {len(data)}")
    return freeze_numbers(np.frombuffer(data, dtype=">u8"))


def snapshot_from_bytes(data: bytes) -> Snapshot:
    """Rebuild a snapshot from its canonical bytes (as stored in `draw_snapshots.numbers`)."""
    if len(data) % 8:
        raise SnapshotError(f"snapshot bytes must be a multiple of 8 long, got {len(data)}")
    numbers = np.frombuffer(data, dtype=">u8").astype(np.uint64)

    unordered = np.flatnonzero(numbers[1:] <= numbers[:-1])
    if unordered.size:
        number = int(numbers[unordered[0] + 1])
        raise SnapshotError(f"snapshot bytes are not strictly ascending at number {number}", number=number)

    return Snapshot(numbers=numbers, sha256=hashlib.sha256(data).hexdigest())


def freeze_entries(entries: Iterable[Entry]) -> Snapshot:
    """Freeze the non-voided entries; the snapshot keeps numbers only, so map winners back by number."""
    numbers = [entry.number for entry in entries if not entry.voided]
    return freeze_numbers(np.array(numbers, dtype=np.int64))


def uniform_index(key: bytes, snapshot_hash: bytes, position: int, bound: int) -> int:
    """Draw an index in [0, bound) for a prize position, without modulo bias.

    Candidate c (c = 0, 1, …) is the first 8 bytes, big-endian, of HMAC-SHA256(key, snapshot_hash
    || u32 position || u32 c). Candidates at or above the largest multiple of `bound` below 2^64
    are rejected; the first one kept gives `candidate % bound`.
    """
    if bound < 1:
        raise ValueError(f"bound must be at least 1, got {bound}")
    limit = _U64 - _U64 % bound

    counter = 0
    while True:
        message = snapshot_hash + position.to_bytes(4, "big") + counter.to_bytes(4, "big")
        candidate = int.from_bytes(hmac.digest(key, message, "sha256")[:8], "big")
        if candidate < limit:
            return candidate % bound
        counter += 1


def draw_winners(seed: str, snapshot: Snapshot, prize_count: int) -> list[Winner]:
    """Draw one winner per prize position, each entry winning at most once.

    The pool starts as the snapshot's sorted numbers. For position p, an index i is drawn with
    `uniform_index` in [0, size of the pool); pool[i] wins, the last element of the pool moves
    into slot i and the pool shrinks by one (a partial Fisher-Yates shuffle). With fewer entries
    than prizes, the positions after the last entry get no winner; with no entries, none do.
    """
    if prize_count < 0:
        raise ValueError(f"prize_count must not be negative, got {prize_count}")
    key = seed_bytes(seed)
    snapshot_hash = bytes.fromhex(snapshot.sha256)

    # Only the moved slots are stored, so a draw over millions of entries copies nothing.
    moved: dict[int, int] = {}
    remaining = snapshot.count
    winners: list[Winner] = []

    for position in range(1, min(prize_count, snapshot.count) + 1):
        index = uniform_index(key, snapshot_hash, position, remaining)
        last = remaining - 1

        slot = moved.get(index, index)
        winners.append(Winner(position=position, number=int(snapshot.numbers[slot])))

        moved[index] = moved.get(last, last)
        remaining = last

    return winners
