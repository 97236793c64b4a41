"""A headless Debian Chromium (never downloaded) and a live server for the dashboard's browser tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mergefront.service.app import create_app
from mergefront.service.settings import Settings

CHROMIUM = os.environ.get("MERGEFRONT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MERGEFRONT_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-unsafe-swiftshader", "--window-size=1400,1300"]


@pytest.fixture
def browser() -> Iterator[object]:
    """Chromium driven by chromedriver; in CI a missing browser fails, locally it skips."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mergefront-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $MERGEFRONT_SCREENSHOTS, or a pytest temporary folder."""
    path = Path(os.environ.get("MERGEFRONT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def live_server(settings: Settings, serve) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a real loopback port, without its own runner (tests run jobs themselves) and with the explicit
    loopback no-auth switch (these tests are about the dashboard; test_dashboard_asks_for_a_token is about tokens);
    yields its base URL."""
    with serve(create_app(settings.model_copy(update={"auth_disabled": True}), run_jobs=False)) as url:
        yield url


@pytest.fixture
def live_server_with_auth(settings: Settings, serve) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a real loopback port that needs a token, as served by default."""
    with serve(create_app(settings, run_jobs=False)) as url:
        yield url
