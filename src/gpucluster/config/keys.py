"""The API keys file format: one key per line; blank lines and `#` comments are skipped."""

from __future__ import annotations

from pathlib import Path


def parse_keys(text: str) -> list[str]:
    """Keys in the text of a keys file."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.append(line)
    return keys


def first_key(path: Path) -> str | None:
    """The first key of a keys file, or None when it has none or cannot be read."""
    try:
        keys = parse_keys(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    return keys[0] if keys else None
