"""Audit data and `festival draw verify`: recomputation, tampering, exit codes and Portuguese output."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from festival.cli import log_level, main
from festival.domain.draw_audit import AuditFormatError, decode_entries, encode_entries, verify_audit
from festival.domain.draw_loteria import loteria_winners
from festival.domain.draws import commitment, draw_winners, freeze_numbers
from festival.settings import Settings
from festival.verify import verify_command
from schemas.draws import AuditPrize, AuditSnapshot, AuditWinner, DrawAudit, LoteriaFederalResult, PackedEntries

SEED = "a1" * 32
LOTERIA = ["50366", "33514", "45504", "94365", "51105"]


def make_audit(numbers: list[int], prizes: int = 3, *, mode: str = "random", packed: bool = False) -> DrawAudit:
    """Build the audit of a completed draw, computed with the real rules."""
    snapshot = freeze_numbers(numbers)
    if mode == "random":
        winners = draw_winners(SEED, snapshot, prizes)
    else:
        winners = loteria_winners(LOTERIA, 1, snapshot, prizes)

    return DrawAudit(
        draw_id=uuid.UUID("0191f0a0-0000-7000-8000-000000000001"),
        title="Festival de Prêmios - Edição de Teste",
        status="completed",
        series=1,
        prizes=[AuditPrize(position=i, description=f"Prêmio {i}") for i in range(1, prizes + 1)],
        mode=mode,  # type: ignore[arg-type]
        commitment=commitment(SEED),
        cutoff_at=datetime(2026, 5, 1, 18, 0, tzinfo=UTC),
        snapshot=AuditSnapshot(
            sha256=snapshot.sha256, count=snapshot.count, entries=encode_entries(snapshot.numbers, packed=packed)
        ),
        loteria_federal=LoteriaFederalResult(prizes=LOTERIA, contest="5999") if mode == "loteria_federal" else None,
        seed=SEED,
        winners=[AuditWinner(position=w.position, number=w.number) for w in winners],
    )


def failed_checks(audit: DrawAudit) -> list[str]:
    return [finding.check for finding in verify_audit(audit).findings if not finding.ok]


def write(tmp_path: Path, audit: DrawAudit) -> Path:
    path = tmp_path / "audit.json"
    path.write_text(audit.model_dump_json(), encoding="utf-8")
    return path


NUMBERS = [12, 345, 6789, 10_000, 54_321, 99_999]


def test_verify_audit_matches() -> None:
    assert failed_checks(make_audit(NUMBERS)) == []


def test_verify_audit_packed_matches() -> None:
    assert failed_checks(make_audit(NUMBERS, packed=True)) == []


def test_verify_tampered_winner() -> None:
    audit = make_audit(NUMBERS)
    tampered = [AuditWinner(position=1, number=6789 if audit.winners[0].number != 6789 else 12), *audit.winners[1:]]
    assert failed_checks(audit.model_copy(update={"winners": tampered})) == ["winner"]


def test_verify_missing_winner() -> None:
    audit = make_audit(NUMBERS)
    assert failed_checks(audit.model_copy(update={"winners": audit.winners[:2]})) == ["winner"]


def test_verify_wrong_seed() -> None:
    audit = make_audit(NUMBERS)
    failed = failed_checks(audit.model_copy(update={"seed": "b2" * 32}))
    assert "commitment" in failed
    assert "winner" in failed


def test_verify_changed_entry() -> None:
    audit = make_audit(NUMBERS)
    assert audit.snapshot is not None
    changed = audit.snapshot.model_copy(update={"entries": encode_entries(freeze_numbers([13, *NUMBERS[1:]]).numbers)})
    failed = failed_checks(audit.model_copy(update={"snapshot": changed}))
    assert "snapshot_hash" in failed


def test_verify_duplicate_entry() -> None:
    audit = make_audit(NUMBERS)
    assert audit.snapshot is not None
    entries = audit.snapshot.entries.model_copy(update={"numbers": [*NUMBERS, 12]})
    changed = audit.snapshot.model_copy(update={"entries": entries})
    assert failed_checks(audit.model_copy(update={"snapshot": changed})) == ["snapshot_duplicate"]


def test_verify_number_outside_space() -> None:
    audit = make_audit([*NUMBERS, 100_000])
    assert failed_checks(audit) == ["number_space"]


def test_verify_unrevealed_seed() -> None:
    audit = make_audit(NUMBERS).model_copy(update={"seed": None, "winners": []})
    assert failed_checks(audit) == ["seed_missing"]


def test_verify_no_entries() -> None:
    audit = make_audit([])
    assert audit.winners == []
    assert failed_checks(audit) == []


def test_verify_fewer_entries_than_prizes() -> None:
    audit = make_audit([7, 8], prizes=4)
    assert len(audit.winners) == 2
    assert failed_checks(audit) == []


def test_verify_loteria_mode() -> None:
    audit = make_audit(NUMBERS, mode="loteria_federal")
    assert [winner.number for winner in audit.winners] == [99_999, 54_321, 10_000]
    assert failed_checks(audit) == []


def test_verify_loteria_tampered_results() -> None:
    audit = make_audit(NUMBERS, mode="loteria_federal")
    assert audit.loteria_federal is not None
    other = audit.loteria_federal.model_copy(update={"prizes": ["00000", "00000", "00000", "00000", "00000"]})
    assert failed_checks(audit.model_copy(update={"loteria_federal": other})) == ["winner", "winner", "winner"]


def test_packed_entries_round_trip() -> None:
    numbers = np.sort(np.random.default_rng(7).choice(10**8, size=50_000, replace=False)).astype(np.uint64)
    assert np.array_equal(decode_entries(encode_entries(numbers)), numbers)


def test_packed_entries_invalid_base64() -> None:
    with pytest.raises(AuditFormatError):
        decode_entries(PackedEntries(data="not base64!"))


def test_cli_file_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command(Settings(), str(write(tmp_path, make_audit(NUMBERS))))
    output = capsys.readouterr().out
    assert code == 0
    assert "Resultado: tudo confere" in output
    assert "1º prêmio (Prêmio 1): número" in output


def test_cli_file_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = make_audit(NUMBERS)
    tampered = audit.model_copy(update={"winners": [AuditWinner(position=1, number=12)]})
    if audit.winners[0].number == 12:
        tampered = audit.model_copy(update={"winners": [AuditWinner(position=1, number=345)]})

    code = verify_command(Settings(), str(write(tmp_path, tampered)))
    output = capsys.readouterr().out
    assert code == 1
    assert "[DIVERGENTE] 1º prêmio (Prêmio 1): publicado 00-00" in output
    assert "divergência(s)" in output


def test_cli_wrong_seed_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = make_audit(NUMBERS).model_copy(update={"seed": "b2" * 32})
    code = verify_command(Settings(), str(write(tmp_path, audit)))
    assert code == 1
    assert "difere do compromisso publicado" in capsys.readouterr().out


def test_cli_fewer_entries_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command(Settings(), str(write(tmp_path, make_audit([7], prizes=2))))
    assert code == 0
    assert "2º prêmio (Prêmio 2): sem ganhador, pois há menos participações do que prêmios" in capsys.readouterr().out


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command(Settings(), str(tmp_path / "nada.json"))
    assert code == 2
    assert "arquivo não encontrado" in capsys.readouterr().err


def test_cli_invalid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.json"
    path.write_text("{not json", encoding="utf-8")
    code = verify_command(Settings(), str(path))
    assert code == 2
    error = capsys.readouterr().err
    assert "não estão no formato esperado" in error
    assert "não é JSON válido" in error


def test_cli_directory_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command(Settings(), str(tmp_path))
    assert code == 2
    assert "é uma pasta" in capsys.readouterr().err


def test_cli_undecodable_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = make_audit(NUMBERS)
    assert audit.snapshot is not None
    broken = audit.snapshot.model_copy(update={"entries": PackedEntries(data="AAAA")})
    code = verify_command(Settings(), str(write(tmp_path, audit.model_copy(update={"snapshot": broken}))))
    assert code == 2
    assert "não foi possível decodificar" in capsys.readouterr().err


def test_cli_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["draw", "verify", str(write(tmp_path, make_audit(NUMBERS)))])
    assert code == 0
    assert "tudo confere" in capsys.readouterr().out


@pytest.fixture
def audit_server() -> Iterator[tuple[str, DrawAudit]]:
    """Serve one audit at /v1/draws/{id}/audit on 127.0.0.1 and 404 elsewhere."""
    audit = make_audit(NUMBERS, packed=True)
    body = audit.model_dump_json().encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == f"/v1/draws/{audit.draw_id}/audit"
            self.send_response(200 if found else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b'{"code": "draw_not_found"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="audit-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", audit
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_cli_fetch_by_id(audit_server: tuple[str, DrawAudit], capsys: pytest.CaptureFixture[str]) -> None:
    url, audit = audit_server
    code = verify_command(Settings(), str(audit.draw_id), url=url)
    assert code == 0
    assert "tudo confere" in capsys.readouterr().out


def test_cli_fetch_default_address(audit_server: tuple[str, DrawAudit], capsys: pytest.CaptureFixture[str]) -> None:
    url, audit = audit_server
    port = int(url.rsplit(":", 1)[1])
    code = verify_command(Settings(http_host="127.0.0.1", http_port=port), str(audit.draw_id))
    assert code == 0


def test_cli_fetch_unknown_draw(audit_server: tuple[str, DrawAudit], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = audit_server
    code = verify_command(Settings(), str(uuid.uuid4()), url=url)
    assert code == 2
    assert "não encontrado" in capsys.readouterr().err


def test_cli_fetch_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    from festival.services import free_port

    code = verify_command(Settings(), str(uuid.uuid4()), url=f"http://127.0.0.1:{free_port()}")
    assert code == 2
    error = capsys.readouterr().err
    assert "não foi possível obter" in error
    assert "servidor inacessível" in error


def test_cli_fetch_invalid_url(capsys: pytest.CaptureFixture[str]) -> None:
    code = verify_command(Settings(), str(uuid.uuid4()), url="127.0.0.1:8000")
    assert code == 2
    assert "endereço inválido: 127.0.0.1:8000" in capsys.readouterr().err


def test_verify_logs_warnings_only() -> None:
    assert log_level("draw", Settings(log_level="INFO"), {}) == "WARNING"


def test_verify_log_level_when_set() -> None:
    settings = Settings(log_level="DEBUG")

    assert log_level("draw", settings, {"FESTIVAL_LOG_LEVEL": "DEBUG"}) == "DEBUG"


def test_services_keep_log_level() -> None:
    assert log_level("gateway", Settings(log_level="INFO"), {}) == "INFO"
