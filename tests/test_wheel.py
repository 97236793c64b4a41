"""The wheel as users get it: built from the tracked files, installed into a fresh venv (no downloads: the wheel
with --no-deps, its dependencies seen from the test venv's site-packages through a path file, so no torch is
fetched), and `mergefront serve` started from a folder that has its own `service/` and `migrations/` packages.

Only `mergefront` may be installed as a top-level import package; the server must answer /healthz and a route
that needs a token, made with the installed `mergefront token create`."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mergefront.errors import MergefrontError
from mergefront.local_server import free_port, wait_until_serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _tracked_tree(dest: Path) -> Path:
    """The repository's tracked and untracked-but-not-ignored files (symlinks kept) copied under `dest`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    archive = dest / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            if (ROOT / name).exists() or (ROOT / name).is_symlink():
                tar.add(ROOT / name, arcname=name, recursive=False)
    src = dest / "src"
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="tar")
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mergefront's wheel, built without build isolation (the test venv's setuptools; nothing downloaded)."""
    work = tmp_path_factory.mktemp("wheel")
    src = _tracked_tree(work)
    out = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(out), str(src)], check=True, timeout=300)
    (built,) = out.glob("mergefront-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; the test venv's packages (torch, fastapi, ...) reached through a
    path file placed after its own site-packages, so the installed `mergefront` is the wheel's."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300)
    # the test venv's site-packages as a plain path entry: its .pth files (the editable install of the repository)
    # are not read from there, so `mergefront` itself can only come from the wheel
    (purelib / "zz_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def test_the_wheel_holds_only_the_mergefront_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"mergefront"}
    for inside in ("service/app.py", "optimizers/__init__.py", "surrogates/__init__.py", "evaluators/__init__.py",
                   "migrations/env.py", "service/dashboard/static/job.js", "py.typed"):
        assert f"mergefront/{inside}" in names, inside
    assert any(n.startswith("mergefront/migrations/versions/") for n in names)


@pytest.fixture
def folder_with_its_own_service(tmp_path: Path) -> Path:
    """A user's project folder whose own `service` and `migrations` packages would break a wrong import."""
    folder = tmp_path / "project"
    for name in ("service", "migrations", "optimizers"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f'raise ImportError("the user\'s own {name} package")\n')
    (folder / "service" / "app.py").write_text("create_app = None\n")
    return folder


@pytest.fixture
def served(venv: Path, folder_with_its_own_service: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    folder = folder_with_its_own_service
    env = {**os.environ, "PYTHONPATH": str(folder), "MERGEFRONT_HOME": str(tmp_path / "home"),
           "MERGEFRONT_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}"}
    env.pop("VIRTUAL_ENV", None)
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(venv / "bin" / "mergefront"), "serve", "--port", str(port), "--no-runner"],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_serving(url, timeout=120, process=proc)
        except MergefrontError as exc:
            pytest.fail(f"{exc}:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
        yield url, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_installed_mergefront_serves_from_a_folder_with_its_own_service_package(
        venv: Path, served: tuple[str, dict[str, str]], folder_with_its_own_service: Path) -> None:
    url, env = served
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import mergefront, mergefront.service.app as a; "
                            "print(mergefront.__file__); print(a.__file__)"], cwd=folder_with_its_own_service,
                           env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel's copy, not the repository's
    user = subprocess.run([python, "-c", "import service"], cwd=folder_with_its_own_service, env=env,
                          capture_output=True, text=True)
    assert "the user's own service package" in user.stderr  # the folder's `service` is the user's, untouched

    assert httpx.get(f"{url}/v1/jobs").status_code == 401
    made = subprocess.run([str(venv / "bin" / "mergefront"), "token", "create", "wheel-test", "--scope", "read"],
                          cwd=folder_with_its_own_service, env=env, check=True, capture_output=True, text=True)
    token = next(w for w in made.stdout.split() if w.startswith("mf_"))
    page = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and page.json()["total"] == 0
    assert "mergefront" in httpx.get(f"{url}/").text  # the dashboard's static files came with the wheel
    assert httpx.get(f"{url}/static/job.js").status_code == 200


def test_only_mergefront_is_installed_as_a_top_level_package(venv: Path) -> None:
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    installed = {p.name for p in purelib.iterdir()} - {"zz_test_venv.pth", "__pycache__"}
    assert {n for n in installed if not n.endswith(".dist-info")} == {"mergefront"}, installed
    (record,) = purelib.glob("mergefront-*.dist-info/RECORD")
    tops = {line.split("/", 1)[0] for line in record.read_text().splitlines()}
    assert {t for t in tops if not t.endswith(".dist-info") and not t.startswith("..")} == {"mergefront"}
