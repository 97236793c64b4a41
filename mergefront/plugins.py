"""Evaluator functions an operator allowed to be called over the network: the plug-in registry.

A job submitted through the REST API may name a user function (`evaluator: package.module:function`) only if an
operator registered it, in one of two ways:

- an entry point of group `mergefront.evaluators` in an installed distribution's metadata, e.g. in its
  pyproject.toml: `[project.entry-points."mergefront.evaluators"] score = "my_evals.scoring:score"`;
- the server's `plugins` setting (MERGEFRONT_PLUGINS): `package.module:function` entries, or a whole
  `package.module` (then any public function defined in that module, not one it imports).

Whether a name is registered is decided from metadata and settings alone: nothing is imported for a name that is
not. The standard library and mergefront's own modules are never callable, whatever is registered. A local
`mergefront run` is not confined: the user runs their own code.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from mergefront.errors import InvalidSpecError

GROUP = "mergefront.evaluators"
_PATH = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?::(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*))?$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plugin:
    """One registration: `target` is `module:function`, or `module` for every public function defined in it."""

    target: str
    source: str  # "entry point NAME (DISTRIBUTION)" or "plugins setting"

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def function(self) -> str | None:
        return self.target.partition(":")[2] or None


def forbidden(module: str) -> bool:
    """Whether a module is one that is never callable over the network: the standard library or mergefront."""
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in ("mergefront", "__main__", "builtins")


def check_target(target: str, what: str) -> str:
    """A registration's target, checked: `module[:function]`, neither of the standard library nor of mergefront."""
    match = _PATH.match(target.strip())
    if match is None:
        raise ValueError(f"{what} {target!r} is not package.module or package.module:function")
    if forbidden(match["module"]):
        raise ValueError(f"{what} {target!r}: the standard library and mergefront itself are never callable")
    return target.strip()


@dataclass(frozen=True)
class Registry:
    plugins: tuple[Plugin, ...]

    @classmethod
    def discover(cls, configured: Iterable[str] = ()) -> Registry:
        """The entry points of group `mergefront.evaluators` (metadata only: nothing imported) and `configured`."""
        found: list[Plugin] = []
        for ep in entry_points(group=GROUP):
            try:
                found.append(Plugin(check_target(ep.value.split("[")[0].strip(), "entry point"),
                                    f"entry point {ep.name} ({ep.dist.name if ep.dist else 'unknown'})"))
            except ValueError as exc:
                log.warning("ignored: %s", exc)
        found += [Plugin(check_target(t, "plugin"), "plugins setting") for t in configured]
        return cls(tuple(found))

    def allows(self, path: str) -> bool:
        """Whether `module:function` is registered (decided without importing anything)."""
        match = _PATH.match(path)
        if match is None or match["attr"] is None or forbidden(match["module"]):
            return False
        module, attr = match["module"], match["attr"]
        return any(p.target == path or (p.function is None and p.module == module and "." not in attr
                                        and not attr.startswith("_")) for p in self.plugins)

    def check(self, path: str, loc: tuple[Any, ...]) -> None:
        """Raise InvalidSpecError (naming `loc`) unless `path` is registered; nothing is imported."""
        if self.allows(path):
            return
        known = ", ".join(p.target for p in self.plugins) or "none"
        raise InvalidSpecError(f"{path[:200]!r} is not an evaluator this server allows: over the network only "
                               f"built-in evaluators, external, and registered plug-ins are (registered: {known}; "
                               "GET /v1/evaluators lists them)", loc)

    def load(self, path: str, loc: tuple[Any, ...]) -> Callable[..., Any]:
        """The registered function `path` names, imported; one registered through its module must be defined there."""
        self.check(path, loc)
        module_name, _, attr = path.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:  # ImportError, AttributeError, or the module's own error
            log.warning("plug-in %s does not load: %s: %s", path, type(exc).__name__, exc)
            raise InvalidSpecError(f"the plug-in {path!r} is registered but does not load on this server "
                                   f"({type(exc).__name__}); the operator's log has the details", loc) from exc
        exact = any(p.target == path for p in self.plugins)
        if not callable(target) or not (exact or getattr(target, "__module__", None) == module_name):
            raise InvalidSpecError(f"{path!r} is not a function defined in the registered module {module_name!r}",
                                   loc)
        return target  # type: ignore[no-any-return]
