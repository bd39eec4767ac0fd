"""Draw certificate (ata do sorteio) and the masking of winners' names and CPFs."""

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from festival.certificate import CertificateData, CertificateWinner, brasilia_time, render_certificate
from festival.domain.draws import commitment
from festival.domain.privacy import display_name, mask_cpf

SEED = "c3" * 32


@pytest.mark.parametrize(
    ("cpf", "masked"),
    [
        ("123.456.789-09", "***.456.789-**"),
        ("12345678909", "***.456.789-**"),
        (" 123 456 789 09 ", "***.456.789-**"),
        ("1234567890", "***.***.***-**"),
        ("123456789012", "***.***.***-**"),
        ("abc", "***.***.***-**"),
        ("", "CPF não informado"),
        (None, "CPF não informado"),
    ],
)
def test_mask_cpf(cpf: str | None, masked: str) -> None:
    assert mask_cpf(cpf) == masked


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Maria da Silva", "Maria S."),
        ("João Pedro D'Ávila", "João D."),
        ("JOSÉ DOS SANTOS", "José S."),
        ("ângela conceição", "Ângela C."),
        ("Ângela", "Ângela"),
        ("  Ana   Beatriz  Souza ", "Ana S."),
        ("João Silva Filho", "João S."),
        ("Carlos Filho", "Carlos F."),
        ("Maria de", "Maria"),
        ("Anne-Marie McArthur", "Anne-Marie M."),
        ("", "Participante"),
        ("   ", "Participante"),
        (None, "Participante"),
    ],
)
def test_display_name(name: str | None, shown: str) -> None:
    assert display_name(name) == shown


def test_display_name_combining_accents() -> None:
    decomposed = "E\u0301rica Go\u0301es"
    assert display_name(decomposed) == "Érica G."


def test_display_name_idempotent() -> None:
    assert display_name(display_name("Maria da Silva")) == "Maria S."


def test_brasilia_time_converts() -> None:
    assert brasilia_time(datetime(2026, 5, 1, 21, 30, tzinfo=UTC)) == "01/05/2026 18:30:00"


def test_brasilia_time_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        brasilia_time(datetime(2026, 5, 1, 21, 30))


def certificate_data(**changes: object) -> CertificateData:
    completed = datetime(2026, 5, 1, 23, 5, tzinfo=UTC)
    values: dict[str, object] = {
        "draw_id": uuid.UUID("0191f0a0-0000-7000-8000-0000000000aa"),
        "title": "Sorteio de Maio",
        "series": 2,
        "prizes": ["Carro 0 km", "Moto", "Vale-compras de R$ 1.000,00"],
        "mode": "random",
        "commitment": commitment(SEED),
        "seed": SEED,
        "snapshot_sha256": "ab" * 32,
        "snapshot_count": 1_234_567,
        "cutoff_at": completed - timedelta(hours=3),
        "frozen_at": completed - timedelta(hours=3, seconds=-2),
        "started_at": completed - timedelta(minutes=5),
        "completed_at": completed,
        "issued_at": completed + timedelta(minutes=1),
        "winners": [
            CertificateWinner.from_customer(1, 123_456, "Maria da Silva", "123.456.789-09"),
            CertificateWinner.from_customer(2, 7, "Zoë Ōtsuka", None),
        ],
    }
    values.update(changes)
    return CertificateData(**values)  # type: ignore[arg-type]


def page_count(pdf: bytes) -> int:
    return int(re.search(rb"/Count (\d+)", pdf).group(1))  # type: ignore[union-attr]


def test_certificate_is_pdf() -> None:
    pdf = render_certificate(certificate_data())
    assert pdf.startswith(b"%PDF-")
    assert page_count(pdf) == 1


def test_certificate_shows_masked_winners() -> None:
    pdf = render_certificate(certificate_data(), compress=False)
    assert b"(Maria S.)" in pdf
    assert b"(***.456.789-**)" in pdf
    assert b"(00-00007)" in pdf


def test_certificate_hides_personal_data() -> None:
    pdf = render_certificate(certificate_data(), compress=False)
    assert b"da Silva" not in pdf
    assert b"123.456.789-09" not in pdf


def test_certificate_shows_audit_values() -> None:
    pdf = render_certificate(certificate_data(), compress=False)
    assert commitment(SEED).encode() in pdf
    assert SEED.encode() in pdf
    assert b"1.234.567" in pdf


def test_certificate_brasilia_times() -> None:
    pdf = render_certificate(certificate_data(), compress=False)
    assert b"01/05/2026 20:05:00" in pdf


def test_certificate_portuguese_accents() -> None:
    pdf = render_certificate(certificate_data(), compress=False)
    assert "Conclusão do sorteio".encode("latin-1") in pdf


def test_certificate_non_latin_characters() -> None:
    data = certificate_data(title="Sorteio – Edição “especial” 🎉")
    pdf = render_certificate(data, compress=False)
    assert "Edição".encode("latin-1") in pdf


def test_certificate_prize_without_winner() -> None:
    pdf = render_certificate(certificate_data(), compress=False)
    assert b"(sem ganhador)" in pdf


def test_certificate_loteria_mode() -> None:
    data = certificate_data(
        mode="loteria_federal", loteria_prizes=["50366", "33514", "45504", "94365", "51105"], loteria_contest="5999"
    )
    pdf = render_certificate(data, compress=False)
    assert b"50366, 33514, 45504, 94365, 51105" in pdf
    assert b"(00-64455)" in pdf


def test_certificate_before_draw() -> None:
    data = certificate_data(seed=None, started_at=None, completed_at=None, winners=[])
    pdf = render_certificate(data, compress=False)
    assert "ainda não revelada".encode("latin-1") in pdf


def test_certificate_many_prizes_pages() -> None:
    prizes = [f"Prêmio {i}" for i in range(1, 121)]
    winners = [CertificateWinner.from_customer(i, i, "Ana Souza", "11122233344") for i in range(1, 121)]
    pdf = render_certificate(certificate_data(prizes=prizes, winners=winners))
    assert page_count(pdf) >= 3


def test_certificate_other_timezone_input() -> None:
    offset = timezone(timedelta(hours=9))
    data = certificate_data(cutoff_at=datetime(2026, 5, 2, 6, 0, tzinfo=offset))
    pdf = render_certificate(data, compress=False)
    assert b"01/05/2026 18:00:00" in pdf
