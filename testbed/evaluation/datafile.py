"""Data files (matrices, workloads) by name or path, read into pydantic models with errors that name
file, field and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ..topology import _format_error

M = TypeVar("M", bound=BaseModel)


def resolve(name_or_path: str, folder: Path) -> Path:
    """Map 'NAME' to `folder`/NAME.toml; a .toml name or an existing path is taken as it is."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    return folder / f"{name_or_path}.toml"


def available(folder: Path) -> list[str]:
    """Names of the data files shipped in `folder`."""
    return sorted(p.stem for p in folder.glob("*.toml"))


class DataFileError(ValueError):
    """A matrix or workload file that cannot be used; the message names file, field and value."""


def read_text(path: Path, what: str) -> str:
    """The file's text; `what` names the kind of file in the error ('matrix', 'workload')."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such {what} file") from None


def parse(text: str, origin: Path) -> dict:
    """The TOML table in `text`, read from `origin`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"{origin}: not valid TOML: {exc}") from None


def read(path: Path, what: str) -> dict:
    """The file's TOML table."""
    return parse(read_text(path, what), path)


def validate(path: Path, model: type[M], data: dict, context: dict | None = None) -> M:
    """`model` from `data`; every error line is 'FILE: FIELD: MESSAGE (got VALUE)'."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise DataFileError("\n".join(_format_error(path, e) for e in exc.errors())) from None


def named(path: Path, data: dict) -> dict:
    """Default `name` to the file's stem, and refuse a different one."""
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise DataFileError(f"{path}: name: {data['name']!r} must match the file name {path.stem!r}")
    return data
