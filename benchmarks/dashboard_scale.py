"""How fast a job with 10,000 evaluations opens on the dashboard.

Builds a completed 4-objective job with N evaluations and one front step per evaluation (as the runner
stores them) straight through the repository (no Ray), serves the app with uvicorn, and times:
  - the API calls the job page makes when it opens (job, points, hypervolume history, first table page),
    and their response sizes;
  - its peer: fetching every evaluation through GET /v1/jobs/{id}/evaluations in pages of 1000, which is what
    a dashboard without server-side paging and aggregation would have to do;
  - with Debian's Chromium present: navigation to the page until its plots and table are drawn.

    .venv/bin/python benchmarks/dashboard_scale.py [--n 10000] [--db URL] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mergefront.service.app import create_app  # noqa: E402
from mergefront.service.db import make_engine, make_session_factory, upgrade_database  # noqa: E402
from mergefront.service.settings import Settings  # noqa: E402
from tests.dashboard.synthetic import build_job  # noqa: E402


def _serve(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, run_jobs=False), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def _page_calls(client: httpx.Client, job_id: int) -> tuple[float, int]:
    """Seconds and bytes of the job page's API calls, made one after another (the page makes 3 of them at once)."""
    start, size = time.perf_counter(), 0
    for url in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/points", f"/v1/jobs/{job_id}/hypervolume",
                f"/v1/jobs/{job_id}/table?sort=number&offset=0&limit=25"):
        response = client.get(url)
        response.raise_for_status()
        size += len(response.content)
    return time.perf_counter() - start, size


def _all_evaluations(client: httpx.Client, job_id: int) -> tuple[float, int]:
    start, size, offset = time.perf_counter(), 0, 0
    while True:
        page = client.get(f"/v1/jobs/{job_id}/evaluations", params={"offset": offset, "limit": 1000})
        size += len(page.content)
        offset += 1000
        if offset >= page.json()["total"]:
            return time.perf_counter() - start, size


def _browser_open(base: str, job_id: int, repeats: int) -> list[tuple[float, float]] | None:
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--enable-unsafe-swiftshader", "--window-size=1400,1300",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    times: list[tuple[float, float]] = []
    try:
        driver.get(f"{base}/")  # warm the cache of the static files, as a returning user has it
        for _ in range(repeats + 1):
            driver.get(f"{base}/jobs/{job_id}")
            # times the page itself records (ms since navigation start): the main thread may be too busy to
            # answer WebDriver while it draws, so polling from here would overstate them
            WebDriverWait(driver, 120, poll_frequency=0.05).until(
                lambda d: d.execute_script("return document.getElementById('parcoords').dataset.drawnMs"))
            opened, drawn = driver.execute_script(
                "return [document.body.dataset.openedMs, document.getElementById('parcoords').dataset.drawnMs]")
            times.append((float(opened) / 1e3, float(drawn) / 1e3))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of an empty database (default: a temp SQLite)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mergefront-bench-"))
    settings = Settings(home=home, database_url=args.db, auth_disabled=True)  # served on loopback only
    url = settings.resolved_database_url
    upgrade_database(url)
    start = time.perf_counter()
    job_id = build_job(make_session_factory(make_engine(url)), n=args.n, n_objectives=4)
    print(f"built job {job_id}: {args.n} evaluations, {args.n} front steps, 4 objectives "
          f"in {time.perf_counter() - start:.1f} s ({url.split(':')[0]})")
    base, server, thread = _serve(settings)
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            _page_calls(client, job_id)
            page = [_page_calls(client, job_id) for _ in range(args.repeats)]
            peer = [_all_evaluations(client, job_id) for _ in range(args.repeats)]
        browser = _browser_open(base, job_id, args.repeats)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    med = statistics.median
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    print(f"job page API calls (job, points, hypervolume, table page): median {med(t for t, _ in page) * 1e3:.0f} ms, "
          f"{page[0][1] / 1e3:.0f} kB")
    print(f"peer, every evaluation via /evaluations in pages of 1000:   median {med(t for t, _ in peer) * 1e3:.0f} ms, "
          f"{peer[0][1] / 1e3:.0f} kB")
    if browser is not None:
        opened, parcoords = [t for t, _ in browser], [t for _, t in browser]
        print(f"headless Chromium, navigation until summary, front, hypervolume and table are drawn: median "
              f"{med(opened) * 1e3:.0f} ms (min {min(opened) * 1e3:.0f}, max {max(opened) * 1e3:.0f}; static files "
              f"cached); until the parallel coordinates are drawn too: median {med(parcoords) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
