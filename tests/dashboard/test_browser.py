"""The dashboard in a real headless Chromium against a live server: a real job appears live, its front shows as
many points as the API returns, clicking a point or a row shows that evaluation; screenshots are saved."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.runner import JobRunner
from mergefront.spec import parse_spec
from tests.dashboard.synthetic import build_job

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def _wait(driver: Any, script: str, timeout: float = 60) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


# a time as people read it: to the second, with its zone named (not ISO with microseconds and no zone)
HUMAN_TIME = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{2}:\d{2}:\d{2}( [AP]M)? (UTC|GMT[+-]\d+|[A-Z]{3,4})$")

# the summary's progress never runs behind the front's caption ("59 / 64" beside "60 completed")
WATCH_PROGRESS = """
window.__behind = []; window.__compared = 0;
new MutationObserver(() => {
  const count = document.querySelector('#summary .progress .count');
  const caption = document.getElementById('front-caption').textContent.match(/of (\\d+) completed/);
  if (!count || !caption || caption[1] === '0') return;
  window.__compared += 1;
  if (Number(count.textContent.split('/')[0]) < Number(caption[1])) {
    window.__behind.push([count.textContent, caption[0]]);
  }
}).observe(document.querySelector('main'), { subtree: true, childList: true, characterData: true });
"""


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _details(driver: Any, evaluation_id: int) -> dict[str, str]:
    _wait(driver, "const p = document.getElementById('picked');"
          f"return p && p.dataset.evaluationId == '{evaluation_id}' && document.querySelector('#details .export')")
    rows = driver.find_elements(By.CSS_SELECTOR, "#details table.metrics tr")
    return {r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text for r in rows}


def _check_export(driver: Any, base: str, evaluation_id: int) -> None:
    response = httpx.get(f"{base}/v1/evaluations/{evaluation_id}/export/mergekit")
    if response.status_code == 200:
        assert driver.find_element(By.ID, "export-yaml").text.strip() == response.text.strip()
        assert driver.find_element(By.ID, "export-download").get_attribute("download").endswith(".yaml")
    else:
        assert driver.find_element(By.ID, "export-missing").text == "export not available"


def test_a_running_job_fills_its_page_live_and_a_clicked_point_shows_its_evaluation(
        browser: Any, live_server: str, sessions, settings, spec_data: dict, screenshots: Path) -> None:
    spec_data["objectives"] = [{"task": "rotated"}, {"task": "parity"}]
    spec_data["optimizer"].update(budget=12, batch_size=4)
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    browser.get(f"{live_server}/jobs/{job_id}")
    _wait(browser, "return document.body.dataset.loaded")
    assert browser.execute_script("return document.body.dataset.jobState") == "pending"
    browser.execute_script("window.__sameDocument = true")  # gone if the page reloads
    browser.execute_script(WATCH_PROGRESS)
    runner = threading.Thread(target=JobRunner(session_factory=sessions, settings=settings).run, args=(job_id,))
    runner.start()
    _wait(browser, "return document.body.dataset.loaded === 'completed:12:0'", timeout=240)
    runner.join(timeout=60)
    assert browser.execute_script("return window.__sameDocument") is True
    assert browser.execute_script("return window.__compared") > 0
    assert browser.execute_script("return window.__behind") == []
    created = browser.execute_script("return [...document.querySelectorAll('#summary .item')].find((i) => "
                                     "i.querySelector('.label').textContent === 'created').querySelector('.value')"
                                     ".textContent")
    assert HUMAN_TIME.match(created), created

    points = httpx.get(f"{live_server}/v1/jobs/{job_id}/points").json()
    assert len(points["ids"]) == 12
    traces = browser.find_elements(By.CSS_SELECTOR, "#front .scatterlayer .trace")
    drawn = traces[0].find_elements(By.CSS_SELECTOR, "path.point")
    assert len(drawn) == len(points["ids"])
    colors = browser.execute_script("return document.getElementById('front').data[0].marker.color")
    assert colors.count("#d62728") == points["n_front"] >= 1  # front members in red, one trace for all points
    assert "12 completed" in browser.find_element(By.ID, "front-caption").text
    assert browser.execute_script("return document.getElementById('hv').data[0].x.length") >= 1
    assert "(reference point [0, 0])" in browser.find_element(By.ID, "summary").text  # beside the hypervolume
    browser.save_screenshot(str(screenshots / "job-2-objectives.png"))

    first = colors.index("#d62728")
    clicked = browser.execute_script(f"return document.getElementById('front').data[0].customdata[{first}]")
    hover = browser.execute_script(f"return document.getElementById('front').data[0].text[{first}]")
    evaluation = httpx.get(f"{live_server}/v1/evaluations/{clicked}").json()
    assert f"evaluation #{evaluation['number']}" in hover  # the hover reads values, not only "#16"
    assert all(f"{k}: {v:.4f}" in hover for k, v in evaluation["metrics"].items())
    assert all(f"{k}: {v:.3f}" in hover for k, v in evaluation["params"].items())
    assert browser.find_element(By.ID, "details-card").get_attribute("hidden")  # no empty card before a pick
    ActionChains(browser).move_to_element(drawn[first]).click().perform()
    shown = _details(browser, clicked)
    assert shown == {k: _fmt(v) for k, v in evaluation["metrics"].items()}
    params = browser.find_element(By.CSS_SELECTOR, "#details table.params").text
    assert all(f"{k} {_fmt(v)}" in params for k, v in evaluation["params"].items())
    assert f"{evaluation['merge_seconds']:.3f} s" in browser.find_element(By.CSS_SELECTOR, "#details").text
    _check_export(browser, live_server, clicked)
    browser.save_screenshot(str(screenshots / "job-2-objectives-clicked.png"))


def test_many_objectives_show_a_scatter_matrix_and_parallel_coordinates_and_the_table_pages(
        browser: Any, live_server: str, sessions, screenshots: Path) -> None:
    job_id = build_job(sessions, n=600, n_objectives=4, seed=2, history_points=60)
    browser.get(f"{live_server}/jobs/{job_id}")
    _wait(browser, "return document.body.dataset.loaded === 'completed:600:0'")
    points = httpx.get(f"{live_server}/v1/jobs/{job_id}/points").json()
    front = browser.execute_script("const d = document.getElementById('front').data[0];"
                                   "return [d.type, d.dimensions.length, d.dimensions[0].values.length]")
    assert front == ["splom", 4, len(points["ids"])]
    _wait(browser, "return document.getElementById('parcoords').dataset.drawn === '600'")
    pc = browser.execute_script("const d = document.getElementById('parcoords').data[0];"
                                "return [d.type, d.dimensions.map((x) => x.label), d.dimensions[3].values.length]")
    assert pc == ["parcoords", [k.removesuffix("_accuracy") for k in points["objectives"]] + points["parameters"],
                  len(points["ids"])]  # objectives and parameters
    assert browser.find_element(By.ID, "parcoords").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#parcoords canvas")
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "parcoords")).perform()
    assert not [e for e in browser.find_elements(By.CSS_SELECTOR, "#parcoords .modebar") if e.is_displayed()]
    # 4 objectives and 8 parameters fit the page's width: no scrolling sideways
    table = browser.execute_script("const t = document.getElementById('evaluations');"
                                   "return [t.scrollWidth, t.parentElement.clientWidth]")
    assert table[0] <= table[1], (table, browser.execute_script(
        "return [...document.querySelectorAll('#evaluations thead th')].map((th) => th.textContent + ':' + "
        "th.offsetWidth).join(' | ') + ' ROW ' + [...document.querySelectorAll('#evaluations tbody tr:first-child td')]"
        ".map((td) => td.textContent + ':' + td.offsetWidth).join(' | ')"))

    browser.find_element(By.CSS_SELECTOR, "th[data-column='metrics.parity_accuracy']").click()
    _wait(browser, "return document.querySelector('th[data-column=\"metrics.parity_accuracy\"]').textContent"
                   ".endsWith('▼')")
    best = httpx.get(f"{live_server}/v1/jobs/{job_id}/table",
                     params={"sort": "metrics.parity_accuracy", "descending": True, "limit": 1}).json()["items"][0]
    _wait(browser, f"return document.querySelector('#evaluations tbody tr').dataset.evaluationId == '{best['id']}'")
    assert browser.find_element(By.ID, "table-count").text == "1–25 of 600"
    browser.find_element(By.CSS_SELECTOR, "#evaluations tbody tr").click()
    assert _details(browser, best["id"])["parity_accuracy"] == _fmt(best["metrics"]["parity_accuracy"])
    timings = {r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text
               for r in browser.find_elements(By.CSS_SELECTOR, "#details table.timings tr")}
    assert HUMAN_TIME.match(timings["started"]) and HUMAN_TIME.match(timings["finished"]), timings
    browser.save_screenshot(str(screenshots / "job-4-objectives.png"))

    browser.get(live_server)
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{job_id}\"]')")
    row = browser.find_element(By.CSS_SELECTOR, f"tr.job-row[data-job-id='{job_id}']").text
    assert "completed" in row and "600 / 600" in row and "random" in row
    browser.save_screenshot(str(screenshots / "jobs.png"))


def test_dashboard_asks_for_a_token_once_and_keeps_it_for_the_session(
        browser: Any, live_server_with_auth: str, sessions, spec_data: dict, make_token) -> None:
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    browser.get(live_server_with_auth)
    _wait(browser, "return document.getElementById('token-form')")
    browser.find_element(By.ID, "token-input").send_keys("mf_not-a-token")
    browser.find_element(By.ID, "token-submit").click()
    _wait(browser, "const f = document.getElementById('token-form'); return f && f.textContent.includes("
                   "'That token was refused (unknown token)')")
    field = browser.find_element(By.ID, "token-input")
    field.send_keys(make_token("read"))
    browser.find_element(By.ID, "token-submit").click()
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{job_id}\"]')")
    browser.get(f"{live_server_with_auth}/jobs/{job_id}")  # another page of the same tab: no second question
    _wait(browser, "return document.body.dataset.loaded")
    assert not browser.find_elements(By.ID, "token-form")
