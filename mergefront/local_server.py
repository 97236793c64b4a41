"""A mergefront server started on this machine: a free port for it, and waiting until it answers.

What scripts, benchmarks and tests that start `mergefront serve` (or `uvicorn` on `create_app`) share::

    port = free_port()
    proc = subprocess.Popen(["mergefront", "serve", "--port", str(port)], stderr=subprocess.PIPE)
    wait_until_serving(f"http://127.0.0.1:{port}", process=proc, timeout=120)
"""

from __future__ import annotations

import socket
import subprocess
import time

import httpx

from mergefront.errors import MergefrontError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, *, timeout: float = 120.0, process: subprocess.Popen | None = None,
                       interval: float = 0.2) -> None:
    """Return once `GET {url}/healthz` answers 200; MergefrontError when `timeout` seconds pass first, or when
    `process` (the server's) exits first, with the end of its output where it was piped."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise MergefrontError(f"the server for {url} exited with {process.returncode} before it answered"
                                  f"{_output_tail(process)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=min(2.0, timeout)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise MergefrontError(f"the server for {url} did not answer /healthz within {timeout:g} s")
        time.sleep(interval)


def _output_tail(process: subprocess.Popen, chars: int = 3000) -> str:
    """`:` and the last `chars` of an exited process's piped stdout and stderr; '' when nothing was piped."""
    if process.stdout is None and process.stderr is None:
        return ""
    out, err = process.communicate()
    text = "".join(t.decode(errors="replace") if isinstance(t, bytes) else t for t in (out, err) if t)
    return f":\n{text[-chars:]}" if text else ""
