"""Public display of winners: first name plus initial, and a masked CPF.

Public outputs (the certificate, live screens, `draw_winners`) use these helpers and never the raw
values from `customers`.
"""

import unicodedata

CPF_HIDDEN = "***.***.***-**"
CPF_MISSING = "CPF não informado"
NAME_MISSING = "Participante"

# Lowercase particles of Portuguese surnames, skipped when choosing the initial ("Maria da Silva" → "Maria S.").
_NAME_PARTICLES = frozenset({"da", "das", "de", "del", "di", "do", "dos", "du", "e", "y"})
# Generational suffixes: "João Silva Filho" → "João S.", unless the suffix is the only surname.
_NAME_SUFFIXES = frozenset({"filho", "filha", "neto", "neta", "sobrinho", "sobrinha", "júnior", "junior", "jr", "jr."})


def mask_cpf(cpf: str | None) -> str:
    """Mask a CPF as `***.456.789-**`, keeping only its 4th to 9th digits.

    Punctuation is ignored. A missing CPF gives "CPF não informado"; a value that is not 11 digits
    is masked whole, so a malformed value reveals nothing.
    """
    if cpf is None or not cpf.strip():
        return CPF_MISSING

    digits = "".join(character for character in cpf if character.isdigit())
    if len(digits) != 11 or not digits.isascii():
        return CPF_HIDDEN
    return f"***.{digits[3:6]}.{digits[6:9]}-**"


def _capitalise(word: str) -> str:
    # Keep mixed case as written ("McArthur"), but fix names typed in one case ("MARIA", "maria").
    if word.isupper() or word.islower():
        return word[:1].upper() + word[1:].lower()
    return word


def display_name(full_name: str | None) -> str:
    """Return the public form of a name: the first name and the initial of the last surname.

    "Maria da Silva" gives "Maria S.", "JOÃO PEDRO D'ÁVILA" gives "João D.", and a single name
    is kept whole ("Ângela"). An empty name gives "Participante".
    """
    if full_name is None:
        return NAME_MISSING
    words = unicodedata.normalize("NFC", full_name).split()
    if not words:
        return NAME_MISSING

    first = _capitalise(words[0])
    surnames = [word for word in words[1:] if word.lower() not in _NAME_PARTICLES]
    while len(surnames) > 1 and surnames[-1].lower() in _NAME_SUFFIXES:
        surnames.pop()
    if not surnames:
        return first

    initial = next((character for character in surnames[-1] if character.isalpha()), "")
    return f"{first} {initial.upper()}." if initial else first
