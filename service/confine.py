"""What a job submitted over the network may touch: files under the server's roots, registered plug-ins, and
the resources the operator's caps allow.

A path outside the roots is refused from its text alone (normalised, `..` folded, nothing looked up), so the answer
is the same, and as fast, whether or not it exists; only paths inside a root are looked at, and one whose symbolic
links lead out of the roots is refused too. Relative paths are relative to a root (the first where they exist).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mergefront.errors import InvalidSpecError
from mergefront.objectives import BUILTIN
from mergefront.plugins import Registry
from mergefront.service.settings import Settings
from mergefront.spec import HF_SCHEME, JobSpec, check_spec
from mergefront.suites import BENCH_SCHEME

NAME_MAX = 255  # bytes in one folder or file name (Linux, macOS)
#: a path of names of at most NAME_MAX characters, no NUL, for the schema (the check counts bytes)
NAMES_PATTERN = rf"^/*(?:[^/\x00]{{1,{NAME_MAX}}}/+)*[^/\x00]{{0,{NAME_MAX}}}$"
_PATH_SETTINGS = ("data", "include_path")  # settings of built-in evaluators that name a file or folder


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def confine(value: str, roots: Sequence[Path], *, what: str, setting: str, loc: tuple[Any, ...]) -> Path:
    """The path `value` names under one of `roots` (absolute, symbolic links resolved); InvalidSpecError naming
    `loc` when it lies outside them, with a message that does not depend on whether it exists."""
    outside = InvalidSpecError(f"{value[:200]!r} is outside the {what} folder(s) of this server: give a path "
                               f"relative to it (its operator sets MERGEFRONT_{setting.upper()})", loc)
    if "\x00" in value:
        raise outside
    if any(len(part.encode()) > NAME_MAX for part in Path(value).parts):
        raise InvalidSpecError(f"a folder or file name in {value[:80]!r}... is longer than {NAME_MAX} bytes", loc)
    candidates = [Path(os.path.normpath(root / value)) for root in roots]
    candidates = [p for p, root in zip(candidates, roots, strict=True) if _inside(p, root)]
    if not candidates:
        raise outside
    for path in candidates:
        try:
            real = path.resolve()
            exists = real.exists()
        except OSError:  # a name too long, a loop of links: nothing there to use
            continue
        if not any(_inside(real, root) for root in roots):
            raise outside
        if exists:
            return real
    return candidates[0]


def display_path(path: str, roots: Sequence[Path]) -> str:
    """A confined path as its user wrote it: relative to the root it lies in (else unchanged)."""
    for root in roots:
        if _inside(Path(path), root):
            return Path(path).relative_to(root).as_posix() or "."
    return path


def confine_spec(spec: JobSpec, settings: Settings, registry: Registry) -> JobSpec:
    """A network job's spec with its local paths confined (and made absolute) and its plug-ins checked; then the
    checks every spec gets, with error messages that name paths as the user gave them."""
    _check_caps(spec, settings)
    confined = confine_paths(spec, settings, registry, load=True)
    try:
        check_spec(confined)
    except InvalidSpecError as exc:
        message = exc.message
        for root in [*settings.resolved_model_roots, *settings.resolved_data_roots]:
            message = message.replace(f"{root}{os.sep}", "")
        raise InvalidSpecError(message, exc.loc) from None
    return confined


def confine_paths(spec: JobSpec, settings: Settings, registry: Registry, *, load: bool = False) -> JobSpec:
    """`spec` with its local model and data paths confined to the roots, made absolute; its plug-ins checked against
    `registry` (and with `load`, imported). The runner checks a stored network job again with this before it runs."""
    data = spec.model_dump(mode="json")
    models = data["models"]
    models["base"] = _model_path(models["base"], settings, ("models", "base"))
    models["experts"] = [_model_path(ref, settings, ("models", "experts", i))
                         for i, ref in enumerate(models["experts"])]
    for i, obj in enumerate(data["objectives"]):
        evaluator, loc = obj.get("evaluator") or "", ("objectives", i)
        if ":" in evaluator:
            (registry.load if load else registry.check)(evaluator, (*loc, "evaluator"))
        elif evaluator in BUILTIN:
            for name in _PATH_SETTINGS:
                if isinstance(obj["settings"].get(name), str):
                    obj["settings"][name] = str(confine(obj["settings"][name], settings.resolved_data_roots,
                                                        what="data", setting="data_roots",
                                                        loc=(*loc, "settings", name)))
    return JobSpec.model_validate(data)


def _model_path(ref: str, settings: Settings, loc: tuple[Any, ...]) -> str:
    if ref.startswith((BENCH_SCHEME, HF_SCHEME)):
        return ref
    return str(confine(ref, settings.resolved_model_roots, what="model", setting="model_roots", loc=loc))


def public_spec(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A stored spec as its user wrote it: confined model and data paths relative to their roots (a network job's
    spec can be sent again as it is shown)."""
    out = copy.deepcopy(spec)
    models = out.get("models") or {}
    for key, value in models.items():
        if key == "base" and isinstance(value, str):
            models[key] = display_path(value, settings.resolved_model_roots)
        elif key == "experts" and isinstance(value, list):
            models[key] = [display_path(v, settings.resolved_model_roots) if isinstance(v, str) else v for v in value]
    for obj in out.get("objectives") or []:
        values = obj.get("settings") if isinstance(obj, dict) else None
        if not isinstance(values, dict):
            continue
        for name in _PATH_SETTINGS:
            if isinstance(values.get(name), str):
                values[name] = display_path(values[name], settings.resolved_data_roots)
    return out


def public_ref(ref: str, settings: Settings) -> str:
    """A model reference as a user of mergekit can use it: `org/name` for hf://, a confined path relative to its
    root, anything else as the spec has it (never the server's cache)."""
    if ref.startswith(HF_SCHEME):
        return ref[len(HF_SCHEME):]
    return display_path(ref, settings.resolved_model_roots)


def _check_caps(spec: JobSpec, settings: Settings) -> None:
    """The operator's caps on what one job may ask for (the spec's own bounds are wider)."""
    caps: list[tuple[tuple[str, str], float, float, str]] = [
        (("optimizer", "budget"), spec.optimizer.budget, settings.max_budget, "max_budget"),
        (("optimizer", "batch_size"), spec.optimizer.batch_size, settings.max_batch_size, "max_batch_size"),
        (("optimizer", "initial_points"), spec.optimizer.initial_points or 0, settings.max_budget, "max_budget"),
        (("resources", "workers"), spec.resources.workers, settings.max_workers, "max_workers"),
        (("resources", "gpus_per_worker"), spec.resources.gpus_per_worker, settings.max_gpus_per_worker,
         "max_gpus_per_worker"),
    ]
    for loc, value, cap, name in caps:
        if value > cap:
            raise InvalidSpecError(f"{value} is more than this server allows: at most {cap:g} "
                                   f"(the operator's MERGEFRONT_{name.upper()})", loc)
