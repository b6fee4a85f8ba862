"""docs/configuration.md documents every configuration key the schema has."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from gpucluster.config import Config

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def keys(model: type[BaseModel]) -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        found.add(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= keys(annotation)
        args = getattr(annotation, "__args__", ())
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found |= keys(arg)
    return found


def test_every_key_is_documented():
    text = DOC.read_text()
    missing = sorted(k for k in keys(Config) if f"`{k}`" not in text)
    assert missing == []


def test_every_field_has_a_description():
    def undocumented(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            if not field.description:
                out.append(prefix + name)
            annotation = field.annotation
            nested = [annotation, *getattr(annotation, "__args__", ())]
            for arg in nested:
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    out += undocumented(arg, f"{prefix}{name}.")
        return out

    assert undocumented(Config) == []
