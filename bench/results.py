"""The results page, bench/README.md: each benchmark rewrites only its own section."""

from pathlib import Path

README = Path(__file__).with_name("README.md")


def write_section(begin: str, end: str, section: str, readme: Path = README) -> None:
    """Replace the text from marker `begin` to marker `end` with `section`, or append `section`.

    `section` carries both markers itself, so the next run finds them again.
    """
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text, encoding="utf-8")
