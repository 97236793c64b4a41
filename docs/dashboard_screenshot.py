"""Save a screenshot of a job's dashboard page (the README's picture) with headless Debian Chromium.

    .venv/bin/python docs/dashboard_screenshot.py http://127.0.0.1:8000 1 docs/dashboard-job.png
"""

from __future__ import annotations

import shutil
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-unsafe-swiftshader", "--window-size=1400,1750", "--hide-scrollbars"]


def main(base: str, job_id: int, out: str) -> None:
    profile = tempfile.mkdtemp()
    options = webdriver.ChromeOptions()
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"{base}/jobs/{job_id}")
        wait = WebDriverWait(driver, 120, poll_frequency=0.1)
        wait.until(lambda d: d.execute_script("return document.body.dataset.jobState === 'completed'"))
        wait.until(lambda d: d.execute_script("const p = document.getElementById('parcoords');"
                                              "return p.hidden || p.dataset.drawn"))
        driver.execute_script("document.querySelector('#evaluations tr.on-front').click(); window.scrollTo(0, 0)")
        wait.until(lambda d: d.execute_script("return document.querySelector('#details .export')"))
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(out)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
