"""What every configuration model shares: strict, frozen pydantic models, and the check of a
table's names."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_names(names: Any, pattern: re.Pattern[str], kind: str, rule: str) -> None:
    """ValueError listing the `names` that `pattern` does not match."""
    bad = sorted(name for name in names if not pattern.match(name))
    if bad:
        raise ValueError(f"not {kind}: {', '.join(bad)} ({rule})")
