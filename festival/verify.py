"""`festival draw verify SOURCE`: recompute a draw from its public audit data and report in Portuguese.

SOURCE is an audit JSON file or a draw id, fetched from `GET {url}/v1/draws/{id}/audit`. Exit codes:
0 when everything matches, 1 on any mismatch (or when the draw cannot be verified yet), 2 when the
input cannot be read.
"""

import logging
import sys
import uuid
from pathlib import Path

import httpx
from pydantic import ValidationError

from festival.domain.draw_audit import AuditFormatError, Finding, Verification, verify_audit
from festival.domain.draw_loteria import base_number
from festival.domain.lucky_numbers import format_number, number_space
from festival.settings import Settings
from schemas.draws import DrawAudit

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 30.0


class AuditUnavailable(Exception):
    """The audit data could not be read; the message is in Portuguese, for the person running the command."""


def verify_command(settings: Settings, source: str, url: str | None = None) -> int:
    """Verify one draw and print the result; return the process exit code."""
    try:
        audit = load_audit(settings, source, url)
        verification = verify_audit(audit)
    except AuditUnavailable as error:
        print(f"Erro: {error}", file=sys.stderr)
        return 2
    except AuditFormatError as error:
        logger.debug("audit entries undecodable source=%s error=%s", source, error)
        print("Erro: não foi possível decodificar as participações publicadas (dados compactados inválidos).",
              file=sys.stderr)
        return 2

    print(render_report(audit, verification))
    return 0 if verification.ok else 1


def load_audit(settings: Settings, source: str, url: str | None = None) -> DrawAudit:
    """Read the audit data from a file or, for a draw id, from the API; raise AuditUnavailable on failure."""
    path = Path(source)
    if path.is_dir():
        raise AuditUnavailable(f"{source} é uma pasta; informe o arquivo JSON de auditoria ou o id do sorteio")
    if path.is_file():
        try:
            content = path.read_bytes()
        except OSError as error:
            raise AuditUnavailable(f"não foi possível ler o arquivo {source}: {error.strerror}") from error
    elif _is_uuid(source):
        content = _fetch(settings, source, url)
    elif path.suffix or "/" in source:
        raise AuditUnavailable(f"arquivo não encontrado: {source}")
    else:
        raise AuditUnavailable(f"{source!r} não é um arquivo existente nem um id de sorteio (UUID)")

    try:
        return DrawAudit.model_validate_json(content)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise AuditUnavailable(
                "os dados de auditoria não estão no formato esperado: o conteúdo não é JSON válido"
            ) from error
        fields = sorted({".".join(str(part) for part in item["loc"]) or "(documento)" for item in error.errors()})
        raise AuditUnavailable(
            f"os dados de auditoria não estão no formato esperado; campos inválidos ou ausentes: {', '.join(fields[:8])}"
        ) from error


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _fetch(settings: Settings, draw_id: str, url: str | None) -> bytes:
    base = (url or f"http://{settings.http_host}:{settings.http_port}").rstrip("/")
    endpoint = f"{base}/v1/draws/{draw_id}/audit"
    logger.info("audit fetch started draw_id=%s url=%s", draw_id, endpoint)

    try:
        response = httpx.get(endpoint, timeout=FETCH_TIMEOUT_SECONDS, headers={"accept": "application/json"})
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
        raise AuditUnavailable(f"endereço inválido: {base}; use o formato http://host:porta em --url") from error
    except httpx.ConnectError as error:
        raise AuditUnavailable(
            f"não foi possível obter {endpoint}: conexão recusada ou servidor inacessível; "
            "confira se o gateway está rodando ou informe o endereço com --url"
        ) from error
    except httpx.TimeoutException as error:
        raise AuditUnavailable(
            f"não foi possível obter {endpoint}: sem resposta em {FETCH_TIMEOUT_SECONDS:.0f} s; tente novamente mais tarde"
        ) from error
    except httpx.HTTPError as error:
        raise AuditUnavailable(f"não foi possível obter {endpoint}: {error}") from error

    if response.status_code == 404:
        raise AuditUnavailable(f"sorteio {draw_id} não encontrado em {base}")
    if response.status_code != 200:
        raise AuditUnavailable(f"{endpoint} respondeu HTTP {response.status_code}; tente novamente mais tarde")
    return response.content


def _thousands(value: int | str) -> str:
    return f"{int(value):,}".replace(",", ".")


def _show_number(text: str | None, series: int) -> str:
    if text is None:
        return "nenhum"
    try:
        return format_number(int(text), series)
    except ValueError:
        return text


def _space_bounds(series: int) -> str:
    return f"{format_number(0, series)} e {format_number(number_space(series) - 1, series)}"


def _describe(finding: Finding, audit: DrawAudit) -> str:
    """Write one finding as a sentence in Portuguese."""
    series = audit.series
    prizes = {prize.position: prize.description for prize in audit.prizes}

    match finding.check:
        case "commitment" if finding.ok:
            return "Compromisso: o SHA-256 da semente revelada é igual ao compromisso publicado antes do sorteio."
        case "commitment":
            return (f"Compromisso: o SHA-256 da semente revelada ({finding.expected}) difere do compromisso "
                    f"publicado ({finding.published}).")
        case "seed_missing":
            return "Semente: ainda não revelada; os ganhadores só podem ser conferidos depois do sorteio."
        case "snapshot_missing":
            return "Participações: o retrato das participações ainda não foi publicado (inscrições não encerradas)."
        case "snapshot_duplicate":
            return f"Participações: o número {_show_number(finding.published, series)} aparece mais de uma vez."
        case "snapshot_count" if finding.ok:
            return f"Participações: {_thousands(finding.expected or 0)} números, como publicado."
        case "snapshot_count":
            return (f"Participações: publicadas {_thousands(finding.published or 0)}, mas os dados contêm "
                    f"{_thousands(finding.expected or 0)} números.")
        case "snapshot_hash" if finding.ok:
            return f"Hash das participações: o SHA-256 recalculado confere ({finding.expected})."
        case "snapshot_hash":
            return (f"Hash das participações: publicado {finding.published}, "
                    f"recalculado {finding.expected}.")
        case "number_space" if finding.ok:
            return f"Espaço de números: todos os números estão entre {_space_bounds(series)}."
        case "number_space":
            return f"Espaço de números: o número {finding.published} está fora do intervalo {_space_bounds(series)}."
        case "loteria_missing":
            return "Loteria Federal: o resultado da extração não foi publicado."
        case "loteria_invalid":
            return "Loteria Federal: o resultado publicado não tem cinco números de 5 dígitos."
        case "winner_repeated_position":
            return "Ganhadores: a lista publicada repete uma posição de prêmio."
        case "winner":
            return _describe_winner(finding, prizes.get(finding.position or 0), series)
    return f"{finding.check}: {'confere' if finding.ok else 'diverge'}."


def _describe_winner(finding: Finding, prize: str | None, series: int) -> str:
    label = f"{finding.position}º prêmio" + (f" ({prize})" if prize else "")
    if finding.ok:
        return f"{label}: número {_show_number(finding.expected, series)} confere."
    if finding.published is None:
        return f"{label}: ganhador não publicado; o recálculo indica {_show_number(finding.expected, series)}."
    if finding.expected is None:
        return (f"{label}: publicado {_show_number(finding.published, series)}, mas os dados não "
                "determinam ganhador para este prêmio.")
    return (f"{label}: publicado {_show_number(finding.published, series)}, "
            f"recalculado {_show_number(finding.expected, series)}.")


def _header(audit: DrawAudit) -> list[str]:
    lines = [f"Verificação do sorteio «{audit.title}» ({audit.draw_id})"]
    lines.append(f"Números da sorte: {audit.series} série(s), entre {_space_bounds(audit.series)}")

    if audit.mode == "random":
        lines.append("Modo: sorteio aleatório com semente comprometida (SHA-256 publicado antes do sorteio)")
    elif audit.loteria_federal is None:
        lines.append("Modo: Loteria Federal (resultado não publicado)")
    else:
        result = audit.loteria_federal
        contest = f" concurso {result.contest}," if result.contest else ""
        lines.append(f"Modo: Loteria Federal,{contest} prêmios {', '.join(result.prizes)}")
        base = format_number(base_number(result.prizes, audit.series), audit.series)
        lines.append(f"Número apurado a partir dos cinco prêmios: {base}")
    return lines


def render_report(audit: DrawAudit, verification: Verification) -> str:
    """Write the verification as Portuguese text: one line per check, then the verdict."""
    lines = _header(audit) + [""]
    for finding in verification.findings:
        mark = "[OK]        " if finding.ok else "[DIVERGENTE]"
        lines.append(f"{mark} {_describe(finding, audit)}")

    if verification.winners is not None:
        for prize in audit.prizes[len(verification.winners) :]:
            if not any(finding.position == prize.position for finding in verification.findings):
                label = f"{prize.position}º prêmio ({prize.description})"
                lines.append(f"[--]         {label}: sem ganhador, pois há menos participações do que prêmios.")

    lines.append("")
    failures = sum(not finding.ok for finding in verification.findings)
    if failures == 0:
        lines.append("Resultado: tudo confere. Os ganhadores publicados são os que os dados públicos determinam.")
    else:
        lines.append(f"Resultado: {failures} divergência(s). Os dados publicados não reproduzem o resultado anunciado.")
    return "\n".join(lines)
