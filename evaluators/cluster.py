"""What jobs need to run on a Ray cluster joined by address: the cluster's token, and their code on every node.

A node of a cluster shares neither the server's working directory nor its files. The server's Ray job therefore
gets a runtime environment (`runtime_env`) whose `py_modules` is mergefront's own package, as the server imports
it; Ray uploads it once (by content hash) and every node imports mergefront from its copy. The modules of a
job's own evaluator functions travel with that job's worker setup (`mergefront.evaluators.bundle`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sysconfig
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mergefront.errors import ClusterUnavailableError

# left out of the uploaded code: byte code, and the dashboard's files (workers serve no pages)
EXCLUDES = ("__pycache__", "*.pyc", "service/dashboard/static")


def enable_token_auth() -> None:
    """Send the cluster's token when one is at hand and the operator chose no mode.

    Ray 2.60's head requires a token by default, but a driver that joins a cluster by address sends one only in
    token mode; without it the connection fails after a minute. The token comes from Ray's own places:
    `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`. A cluster without authentication
    accepts a driver that sends one. `RAY_AUTH_MODE` set by the operator is left as it is.
    """
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:  # a Ray without token authentication
        return
    with quiet_auth_advice():
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


@contextmanager
def quiet_auth_advice() -> Iterator[None]:
    """Keep Ray's token-authentication warnings out (a local Ray warns on every start that it made a token and
    how to opt out, which is not ours to advise, in the middle of what `mergefront run` prints); errors still show."""
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """ClusterUnavailableError, saying why, unless something listens at `address` (`host:port`). Ray itself retries
    an address where nothing listens for many minutes before it gives up."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", or a ray:// client address: Ray's own checks apply
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterUnavailableError(f"cannot reach the Ray cluster at {address} (RAY_ADDRESS): "
                                      f"{exc.strerror or type(exc).__name__}") from exc


def module_paths(names: Iterable[str]) -> list[str]:
    """Where the top-level modules `names` are (a package's folder or a module's file), leaving out installed
    packages (the nodes' images have those) and modules Python cannot find."""
    installed = {str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("purelib", "platlib")}
    paths: list[str] = []
    for name in dict.fromkeys(names):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations)))
        elif spec.origin and spec.origin.endswith(".py"):
            path = Path(spec.origin)
        else:
            continue  # built in, or compiled: not something to ship
        if str(path.resolve().parent) not in installed:
            paths.append(str(path))
    return paths


def code_runtime_env() -> dict[str, Any]:
    """The `runtime_env` that ships mergefront's package, as this process imports it, to the nodes."""
    import mergefront

    return {"py_modules": [str(Path(mergefront.__file__).resolve().parent)], "excludes": list(EXCLUDES)}


def user_modules(evaluators: Iterable[str | None]) -> list[str]:
    """The top-level modules of the evaluator functions named by import path (`package.module:function`)."""
    names = (e.partition(":")[0].split(".")[0] for e in evaluators if e is not None and ":" in e)
    return [n for n in dict.fromkeys(names) if n and n != "mergefront"]


def node_cache_dir() -> Path:
    """This node's cache, from its own environment (`MERGEFRONT_CACHE_DIR`, else `MERGEFRONT_HOME`/cache), as the
    server's settings read them: a node of a cluster never writes under the server's paths."""
    if os.environ.get("MERGEFRONT_CACHE_DIR"):
        return Path(os.environ["MERGEFRONT_CACHE_DIR"])
    return Path(os.environ.get("MERGEFRONT_HOME") or Path.home() / ".mergefront") / "cache"
