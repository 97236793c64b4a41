"""Reading a spec file: YAML or JSON, with its relative paths made absolute against the file's folder.

The CLI's `run` and `submit` and the SDK's `Client.submit(path)` all read a spec file here, so a spec means the
same wherever it is sent. Mistakes in the file are InvalidSpecErrors that name the file (and the line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mergefront.errors import InvalidSpecError
from mergefront.objectives import BUILTIN


def read_spec_file(path: str | Path) -> Any:
    """The spec in a YAML (or JSON) file, relative model and data paths resolved against the file's folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidSpecError(f"spec file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpecError(f"cannot read spec file {str(path)!r}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSpecError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise InvalidSpecError(f"{path} holds a {type(data).__name__}, not a spec (a mapping with models:, "
                               "merge:, objectives:, ...)")
    return resolve_paths(data, path.parent)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of a raw spec with its relative local model paths and data files made absolute against `folder`."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and "://" not in value and not Path(value).expanduser().is_absolute():
            return str((folder / value).resolve())
        return value

    out = dict(data)
    models = out.get("models")
    if isinstance(models, dict):
        models = dict(models)
        models["base"] = fix(models.get("base"))
        if isinstance(models.get("experts"), list):
            models["experts"] = [fix(v) for v in models["experts"]]
        out["models"] = models
    if isinstance(out.get("objectives"), list):
        out["objectives"] = [_fix_objective(obj, fix) for obj in out["objectives"]]
    return out


def _fix_objective(obj: Any, fix: Any) -> Any:
    if isinstance(obj, dict) and obj.get("evaluator") in BUILTIN and isinstance(obj.get("settings"), dict):
        settings = dict(obj["settings"])
        for name in ("data", "include_path"):
            if name in settings:
                settings[name] = fix(settings[name])
        return {**obj, "settings": settings}
    return obj
