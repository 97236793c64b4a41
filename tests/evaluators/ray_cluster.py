"""A real Ray cluster of `ray start` nodes on this machine, for tests: its own ports, temp dir and token.

Each node is one `ray start --block` process; every process of the cluster (Ray's workers and agents leave the
node's process group) carries a marker in its environment, and stopping the cluster ends the processes that carry
it, by their ids (never `ray stop`). A node may run another Python environment than the tests' own, as a machine
of a real cluster would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STARTED = "Ray runtime started"
MARKER = "MERGEFRONT_TEST_CLUSTER"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def bare_python(folder: Path) -> Path:
    """A Python environment with the tests' packages but not mergefront: a venv whose only site folder is the
    tests' site-packages added as a plain path, so the editable install's import hook there never runs."""
    import sysconfig

    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(folder)],
                   check=True)
    site = Path(subprocess.check_output([folder / "bin" / "python", "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
                .strip())
    (site / "tests-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


@dataclass
class LocalCluster:
    root: Path
    token: str = field(default_factory=lambda: os.urandom(16).hex())
    nodes: list[subprocess.Popen[str]] = field(default_factory=list)
    address: str = field(default_factory=lambda: f"127.0.0.1:{free_ports(1)[0]}")  # known before the head starts
    temp_dirs: list[Path] = field(default_factory=list)

    @property
    def token_file(self) -> Path:
        path = self.root / "ray_token"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(self.token)
        return path

    def client_env(self) -> dict[str, str]:
        """What a process that joins the cluster needs: its address and token (token auth is Ray's default)."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_TOKEN_PATH": str(self.token_file)}

    def start_node(self, name: str, cpus: int, *, python: Path | None = None, env: Mapping[str, str] = (),
                   timeout: float = 180) -> None:
        """Start the head (first call) or a node that joins it, in folder root/name as its working directory."""
        cwd = self.root / name
        cwd.mkdir(parents=True, exist_ok=True)
        ports = free_ports(7)
        temp = Path(tempfile.mkdtemp(prefix="mf-ray-"))  # short: Ray's socket paths live under it
        self.temp_dirs.append(temp)
        head = not self.nodes
        port = self.address.rpartition(":")[2]
        where = [f"--port={port}", "--head", "--include-dashboard=false", f"--dashboard-port={ports[6]}"] if head \
            else [f"--address={self.address}"]
        command = [str(python or sys.executable), "-c", "from ray.scripts.scripts import main; main()", "start",
                   "--block", *where, f"--num-cpus={cpus}", "--num-gpus=0", f"--node-name={name}",
                   f"--node-manager-port={ports[1]}", f"--object-manager-port={ports[2]}",
                   f"--dashboard-agent-listen-port={ports[3]}", f"--runtime-env-agent-port={ports[4]}",
                   f"--metrics-export-port={ports[5]}", f"--temp-dir={temp}", "--disable-usage-stats"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MERGEFRONT_"))}
        log = cwd / "ray-start.log"
        with log.open("w") as out:
            process = subprocess.Popen(command, cwd=cwd, env={**clean, "RAY_AUTH_MODE": "token",
                                                              "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                                                              MARKER: str(self.root), **env},
                                       stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.nodes.append(process)
        deadline = time.monotonic() + timeout
        while STARTED not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def processes(self) -> list[int]:
        """The ids of this cluster's processes still alive: those whose environment carries its marker."""
        marker = f"{MARKER}={self.root}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
                except OSError:  # gone meanwhile, or not ours to read
                    continue
        return found

    def stop(self) -> None:
        """End this cluster's processes: SIGTERM, then SIGKILL what is left after 20 s."""
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        for process in self.nodes:
            process.wait(timeout=5)
        self.nodes.clear()
        for temp in self.temp_dirs:
            shutil.rmtree(temp, ignore_errors=True)
