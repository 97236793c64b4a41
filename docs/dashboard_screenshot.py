"""Save screenshots of a job's dashboard page (the README's pictures) with headless Debian Chromium: the page
itself at OUT, and beside it OUT-brush.png (a brushed parallel-coordinates axis), OUT-decide.png (constraints,
weights, the recommended point and a comparison) and OUT-importance.png (parameter importance with held-out R²).

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
        decision_views(driver, wait, out.removesuffix(".png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def decision_views(driver: webdriver.Chrome, wait: WebDriverWait, stem: str) -> None:
    """The brushed parallel coordinates, the Decide and Compare cards, and the importance card."""
    from selenium.webdriver.common.by import By

    wait.until(lambda d: d.execute_script("return document.getElementById('importance').dataset.loaded"))
    # the same range a drag would leave: the upper third of the third objective's axis
    driver.execute_script("const gd = document.getElementById('parcoords'); const v = gd.data[0].dimensions[2].values;"
                          "const lo = Math.min(...v), hi = Math.max(...v);"
                          "Plotly.restyle(gd, {'dimensions[2].constraintrange': [[lo + 2 * (hi - lo) / 3, hi]]}, [0])")
    wait.until(lambda d: d.execute_script("return document.getElementById('parcoords').dataset.brushed"))
    driver.find_element(By.ID, "parcoords").find_element(By.XPATH, "..").screenshot(f"{stem}-brush.png")
    driver.find_element(By.ID, "brush-clear").click()
    objective = driver.execute_script("return document.querySelector('input.weight').dataset.objective")
    driver.find_element(By.ID, "constraints").send_keys(f"{objective} >= 0.5")
    driver.find_element(By.ID, "rank").click()
    wait.until(lambda d: d.execute_script("return document.querySelectorAll('#ranking-table input').length >= 2"))
    for box in driver.find_elements(By.CSS_SELECTOR, "#ranking-table input.compare-box")[:2]:
        box.click()
    driver.find_element(By.ID, "compare-run").click()
    wait.until(lambda d: d.execute_script("return document.getElementById('compare-table')"))
    driver.find_element(By.ID, "decide").find_element(By.XPATH, "..").screenshot(f"{stem}-decide.png")
    driver.find_element(By.ID, "importance-card").screenshot(f"{stem}-importance.png")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
