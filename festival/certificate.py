"""The draw certificate (ata do sorteio): a PDF in Brazilian Portuguese with everything needed to audit a draw.

Winners appear as first name plus initial and a masked CPF. The caller passes values already masked
(`CertificateWinner.from_customer` masks raw values), so the PDF never contains personal data.
Times are shown in Brasília time (America/Sao_Paulo).
"""

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from festival.domain.draw_loteria import base_number
from festival.domain.lucky_numbers import format_number, number_space
from festival.domain.privacy import display_name, mask_cpf

BRASILIA = ZoneInfo("America/Sao_Paulo")
_TEXT_FONT = "Helvetica"
_HASH_FONT = "Courier"


@dataclass(frozen=True)
class CertificateWinner:
    """A winner as printed: prize position, lucky number, masked name and masked CPF."""

    position: int
    number: int
    display_name: str
    masked_cpf: str

    @classmethod
    def from_customer(cls, position: int, number: int, full_name: str | None, cpf: str | None) -> "CertificateWinner":
        return cls(position=position, number=number, display_name=display_name(full_name), masked_cpf=mask_cpf(cpf))


@dataclass(frozen=True)
class CertificateData:
    """The facts of one draw that the certificate prints; times must be timezone-aware."""

    draw_id: UUID
    title: str
    series: int
    prizes: list[str]
    mode: Literal["random", "loteria_federal"]
    commitment: str
    cutoff_at: datetime
    issued_at: datetime
    seed: str | None = None
    snapshot_sha256: str | None = None
    snapshot_count: int | None = None
    frozen_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    loteria_prizes: list[str] | None = None
    loteria_contest: str | None = None
    winners: list[CertificateWinner] = field(default_factory=list)


def brasilia_time(moment: datetime | None) -> str:
    """Format an aware datetime as `dd/mm/aaaa hh:mm:ss` in Brasília time, or a dash when absent."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        raise ValueError(f"certificate times must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(BRASILIA).strftime("%d/%m/%Y %H:%M:%S")


def _latin1(text: str) -> str:
    """Replace characters outside Latin-1, which the PDF core fonts cannot draw, by their base letter or '?'."""
    kept = []
    for character in text:
        try:
            character.encode("latin-1")
            kept.append(character)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", character).encode("ascii", "ignore").decode("ascii")
            kept.append(base or "?")
    return "".join(kept)


class _CertificatePDF(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(_TEXT_FONT, size=8)
        self.cell(0, 6, f"Página {self.page_no()} de {{nb}}", align="C")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font(_TEXT_FONT, style="B", size=11)
    pdf.cell(0, 7, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _field(pdf: FPDF, label: str, value: str, *, mono: bool = False) -> None:
    pdf.set_font(_TEXT_FONT, style="B", size=9)
    pdf.cell(62, 5.5, _latin1(label))
    pdf.set_font(_HASH_FONT if mono else _TEXT_FONT, size=8.5 if mono else 9)
    pdf.multi_cell(0, 5.5, _latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _identification(pdf: FPDF, data: CertificateData) -> None:
    _heading(pdf, "Identificação")
    _field(pdf, "Sorteio", data.title)
    _field(pdf, "Código do sorteio", str(data.draw_id), mono=True)
    mode = "Sorteio aleatório com semente comprometida" if data.mode == "random" else "Loteria Federal"
    _field(pdf, "Modalidade", mode)
    first = format_number(0, data.series)
    last = format_number(number_space(data.series) - 1, data.series)
    _field(pdf, "Números da sorte", f"{data.series} série(s), de {first} a {last}")


def _timeline(pdf: FPDF, data: CertificateData) -> None:
    _heading(pdf, "Cronologia (horário de Brasília)")
    _field(pdf, "Encerramento das inscrições", brasilia_time(data.cutoff_at))
    _field(pdf, "Congelamento das participações", brasilia_time(data.frozen_at))
    _field(pdf, "Início do sorteio", brasilia_time(data.started_at))
    _field(pdf, "Conclusão do sorteio", brasilia_time(data.completed_at))


def _evidence(pdf: FPDF, data: CertificateData) -> None:
    _heading(pdf, "Dados para verificação")
    _field(pdf, "Compromisso (SHA-256 da semente)", data.commitment, mono=True)
    _field(pdf, "Semente revelada", data.seed or "ainda não revelada", mono=data.seed is not None)
    _field(pdf, "Hash SHA-256 das participações", data.snapshot_sha256 or "-", mono=data.snapshot_sha256 is not None)
    count = "-" if data.snapshot_count is None else f"{data.snapshot_count:,}".replace(",", ".")
    _field(pdf, "Quantidade de participações", count)

    if data.mode == "loteria_federal" and data.loteria_prizes:
        contest = f"concurso {data.loteria_contest}: " if data.loteria_contest else ""
        _field(pdf, "Resultado da Loteria Federal", contest + ", ".join(data.loteria_prizes))
        _field(pdf, "Número apurado", format_number(base_number(data.loteria_prizes, data.series), data.series))


def _winners(pdf: FPDF, data: CertificateData) -> None:
    _heading(pdf, "Prêmios e ganhadores")
    by_position = {winner.position: winner for winner in data.winners}
    pdf.set_font(_TEXT_FONT, size=9)

    with pdf.table(col_widths=(12, 58, 30, 50, 40), text_align="LEFT", line_height=6) as table:
        table.row(["Nº", "Prêmio", "Número", "Ganhador", "CPF"])
        for position, prize in enumerate(data.prizes, start=1):
            winner = by_position.get(position)
            if winner is None:
                cells = [f"{position}º", prize, "-", "sem ganhador", "-"]
            else:
                number = format_number(winner.number, data.series)
                cells = [f"{position}º", prize, number, winner.display_name, winner.masked_cpf]
            table.row([_latin1(cell) for cell in cells])


def _closing(pdf: FPDF, data: CertificateData) -> None:
    pdf.ln(4)
    pdf.set_font(_TEXT_FONT, size=8.5)
    text = (
        "Qualquer pessoa pode conferir este resultado: os dados públicos do sorteio estão em "
        f"/v1/draws/{data.draw_id}/audit e o comando `festival draw verify {data.draw_id}` recalcula o "
        "compromisso, o hash das participações e os ganhadores. Prêmios sem ganhador indicam que houve "
        "menos participações do que prêmios."
    )
    pdf.multi_cell(0, 4.5, _latin1(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.cell(0, 5, _latin1(f"Ata emitida em {brasilia_time(data.issued_at)} (horário de Brasília)."))


def render_certificate(data: CertificateData, *, compress: bool = True) -> bytes:
    """Render the certificate of a draw as PDF bytes; `compress=False` leaves page text searchable in the bytes."""
    pdf = _CertificatePDF(format="A4")
    pdf.set_compression(compress)
    pdf.set_title(_latin1(f"Ata do sorteio - {data.title}"))
    pdf.set_creation_date(data.issued_at)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_page()

    pdf.set_font(_TEXT_FONT, style="B", size=16)
    pdf.cell(0, 10, "ATA DO SORTEIO", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_TEXT_FONT, size=11)
    pdf.cell(0, 6, _latin1(f"Festival de Prêmios - {data.title}"), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    _identification(pdf, data)
    _timeline(pdf, data)
    _evidence(pdf, data)
    _winners(pdf, data)
    _closing(pdf, data)
    return bytes(pdf.output())
