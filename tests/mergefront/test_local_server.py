"""Waiting for a server started on this machine: it returns once /healthz answers, and says why when it cannot."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mergefront.errors import MergefrontError
from mergefront.local_server import free_port, wait_until_serving

#: a server that starts listening after a pause and answers 200 on /healthz only (503 elsewhere)
LATE_SERVER = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
time.sleep(float(sys.argv[2]))
HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_returns_once_a_late_server_answers_healthz() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", LATE_SERVER, str(port), "1.0"])
    try:
        start = time.monotonic()
        wait_until_serving(f"http://127.0.0.1:{port}", timeout=30, process=proc, interval=0.05)
        assert 1.0 <= time.monotonic() - start < 30
    finally:
        proc.kill()
        proc.wait()


def test_a_server_that_exits_first_is_reported_with_its_output() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; print('error: no database'); sys.exit(3)"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with pytest.raises(MergefrontError, match=r"exited with 3 before it answered:\nerror: no database"):
        wait_until_serving(f"http://127.0.0.1:{free_port()}", timeout=30, process=proc)


def test_nothing_answering_is_reported_after_the_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(MergefrontError, match=r"did not answer /healthz within 0.5 s"):
        wait_until_serving(f"http://127.0.0.1:{free_port()}", timeout=0.5, interval=0.05)
    assert time.monotonic() - start < 5
