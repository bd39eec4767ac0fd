"""Audit data: the compact encoding of a snapshot's numbers, and the recomputation of a published draw.

`verify_audit` is what `festival draw verify` runs; the audit endpoint builds `DrawAudit` with
`encode_entries`. Both sides share this module so that the encoding has one definition.
"""

import base64
import binascii
import zlib
from dataclasses import dataclass

import numpy as np

from festival.domain.draw_loteria import LoteriaResultError, loteria_winners
from festival.domain.draws import NumberArray, Snapshot, SnapshotError, Winner, commitment, draw_winners, freeze_numbers
from festival.domain.lucky_numbers import number_space
from schemas.draws import AuditEntries, DrawAudit, PackedEntries, PlainEntries

# Up to this many entries the audit lists the numbers in JSON; above it, they are packed.
PLAIN_ENTRIES_MAX = 10_000
_MAX_PACKED_BYTES = 4 * number_space(1000) + 4


class AuditFormatError(ValueError):
    """The audit's entries cannot be decoded (invalid base64 or zlib data, or a truncated gap)."""


def encode_entries(numbers: NumberArray, *, packed: bool | None = None) -> PlainEntries | PackedEntries:
    """Encode a snapshot's sorted numbers for the audit: plain JSON for small draws, packed otherwise.

    Packed: the gaps between consecutive sorted numbers (the first gap is the first number itself)
    as unsigned 32-bit little-endian integers, compressed with zlib, then base64. Gaps are small
    when entries are dense, so zlib shrinks 10,000,000 entries to a few tens of megabytes at most.
    """
    if packed is None:
        packed = numbers.size > PLAIN_ENTRIES_MAX
    if not packed:
        return PlainEntries(numbers=[int(number) for number in numbers])

    gaps = np.diff(numbers, prepend=np.uint64(0))
    if gaps.size and int(gaps.max()) >= 1 << 32:
        raise ValueError("numbers must be sorted ascending and below 2^32 to be packed")
    compressed = zlib.compress(gaps.astype("<u4").tobytes(), 6)
    return PackedEntries(data=base64.b64encode(compressed).decode("ascii"))


def decode_entries(entries: AuditEntries) -> NumberArray:
    """Decode the audit's entries into numbers (sorted when packed, as published when plain)."""
    if isinstance(entries, PlainEntries):
        return np.array(entries.numbers, dtype=np.uint64)

    try:
        compressed = base64.b64decode(entries.data, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, _MAX_PACKED_BYTES)
    except (binascii.Error, zlib.error) as error:
        raise AuditFormatError(f"invalid packed entries: {error}") from error
    if inflater.unconsumed_tail or not inflater.eof:
        raise AuditFormatError("invalid packed entries: the zlib stream is truncated or too large")
    if len(raw) % 4:
        raise AuditFormatError(f"invalid packed entries: {len(raw)} bytes is not a whole number of 4-byte gaps")

    gaps = np.frombuffer(raw, dtype="<u4").astype(np.uint64)
    return np.cumsum(gaps, dtype=np.uint64)


@dataclass(frozen=True)
class Finding:
    """One check of a verification: what was compared, whether it matched, and both values."""

    check: str
    ok: bool
    expected: str | None = None
    published: str | None = None
    position: int | None = None


@dataclass(frozen=True)
class Verification:
    findings: list[Finding]
    winners: list[Winner] | None  # recomputed winners; None when they could not be recomputed
    snapshot: Snapshot | None

    @property
    def ok(self) -> bool:
        return all(finding.ok for finding in self.findings)


def _check_seed(audit: DrawAudit) -> list[Finding]:
    if audit.seed is None:
        # A Loteria Federal draw takes its result from the lottery, so an unrevealed seed changes nothing.
        return [] if audit.mode == "loteria_federal" else [Finding("seed_missing", ok=False)]

    recomputed = commitment(audit.seed)
    return [Finding("commitment", ok=recomputed == audit.commitment, expected=recomputed, published=audit.commitment)]


def _check_snapshot(audit: DrawAudit) -> tuple[list[Finding], Snapshot | None]:
    if audit.snapshot is None:
        return [Finding("snapshot_missing", ok=False)], None

    numbers = decode_entries(audit.snapshot.entries)
    try:
        snapshot = freeze_numbers(numbers)
    except SnapshotError as error:
        return [Finding("snapshot_duplicate", ok=False, published=str(error.number))], None

    space = number_space(audit.series)
    outside = snapshot.numbers[snapshot.numbers >= space]
    findings = [
        Finding("snapshot_count", ok=snapshot.count == audit.snapshot.count,
                expected=str(snapshot.count), published=str(audit.snapshot.count)),
        Finding("snapshot_hash", ok=snapshot.sha256 == audit.snapshot.sha256,
                expected=snapshot.sha256, published=audit.snapshot.sha256),
        Finding("number_space", ok=outside.size == 0,
                expected=str(space), published=str(int(outside[0])) if outside.size else None),
    ]
    return findings, snapshot


def _recompute_winners(audit: DrawAudit, snapshot: Snapshot) -> tuple[list[Finding], list[Winner] | None]:
    prize_count = len(audit.prizes)

    if audit.mode == "random":
        if audit.seed is None:
            return [], None
        return [], draw_winners(audit.seed, snapshot, prize_count)

    if audit.loteria_federal is None:
        return [Finding("loteria_missing", ok=False)], None
    try:
        return [], loteria_winners(audit.loteria_federal.prizes, audit.series, snapshot, prize_count)
    except LoteriaResultError as error:
        return [Finding("loteria_invalid", ok=False, published=str(error))], None


def _compare_winners(published: list[Winner], recomputed: list[Winner]) -> list[Finding]:
    by_position = {winner.position: winner.number for winner in published}
    expected = {winner.position: winner.number for winner in recomputed}
    findings = []

    for position in sorted(by_position.keys() | expected.keys()):
        published_number = by_position.get(position)
        expected_number = expected.get(position)
        findings.append(
            Finding(
                "winner",
                ok=published_number == expected_number,
                expected=None if expected_number is None else str(expected_number),
                published=None if published_number is None else str(published_number),
                position=position,
            )
        )

    if len(published) != len(by_position):
        findings.append(Finding("winner_repeated_position", ok=False, published=str(len(published))))
    return findings


def verify_audit(audit: DrawAudit) -> Verification:
    """Recompute the commitment, the snapshot hash and the winners of a published draw and compare them.

    Raises AuditFormatError when the entries cannot be decoded at all.
    """
    findings = _check_seed(audit)

    snapshot_findings, snapshot = _check_snapshot(audit)
    findings += snapshot_findings
    if snapshot is None:
        return Verification(findings=findings, winners=None, snapshot=None)

    winner_findings, recomputed = _recompute_winners(audit, snapshot)
    findings += winner_findings
    if recomputed is None:
        return Verification(findings=findings, winners=None, snapshot=snapshot)

    published = [Winner(position=winner.position, number=winner.number) for winner in audit.winners]
    findings += _compare_winners(published, recomputed)
    return Verification(findings=findings, winners=recomputed, snapshot=snapshot)
