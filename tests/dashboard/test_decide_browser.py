"""The dashboard's decision views in a real headless Chromium, on one real job run once for the module
(bench://digits, MAP, three objectives, 16 evaluations on Ray): brushing the parallel coordinates filters the
table and dims the front, constraints and weights rank the front and recommend a point, 2-4 points compare side
by side, the surrogates' parameter importance shows with its held-out R² beside the predicted front; the CSV
download is the REST file; cancel of a running job, the live jobs list and a missing job's page; rename, notes
and delete from the job's page and the jobs list."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mergefront.service import repository as repo
from mergefront.service.app import create_app
from mergefront.service.db import make_engine, make_session_factory, session_scope, upgrade_database
from mergefront.service.runner import JobRunner
from mergefront.service.settings import Settings
from mergefront.spec import parse_spec
from tests.conftest import SPEC, live_server

pytestmark = pytest.mark.slow

OBJECTIVES = ["rotated_accuracy", "inverted_accuracy", "parity_accuracy"]


def _spec(**optimizer: Any) -> dict:
    return {**SPEC, "name": "decide-digits",
            "optimizer": {"name": "map", "budget": 16, "batch_size": 4, "seed": 5, **optimizer}}


@pytest.fixture(scope="module")
def job(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The shared real job, completed, behind a live server without auth (these tests are about the views)."""
    home = tmp_path_factory.mktemp("decide")
    settings = Settings(home=home / "home", database_url=f"sqlite:///{home / 'mergefront.db'}", cache_dir=cache_dir,
                        lease_seconds=30, poll_seconds=0.2, allowed_hosts=["127.0.0.1", "localhost"])
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(_spec())).id
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "completed"
    try:
        with live_server(create_app(settings.model_copy(update={"auth_disabled": True}), run_jobs=False)) as url:
            yield {"url": url, "id": job_id, "sessions": sessions, "settings": settings}
    finally:
        engine.dispose()


def _wait(driver: Any, script: str, timeout: float = 60) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def _open(browser: Any, job: dict[str, Any]) -> None:
    browser.get(f"{job['url']}/jobs/{job['id']}")
    _wait(browser, "return document.body.dataset.loaded === 'completed:16:0'")
    _wait(browser, "return document.getElementById('parcoords').dataset.drawn === '16'")


def _table_ids(browser: Any) -> list[int]:
    return [int(r.get_attribute("data-evaluation-id"))
            for r in browser.find_elements(By.CSS_SELECTOR, "#evaluations tbody tr")]


def test_brushing_an_axis_filters_the_table_and_dims_the_front(browser: Any, job: dict[str, Any]) -> None:
    _open(browser, job)
    points = httpx.get(f"{job['url']}/v1/jobs/{job['id']}/points").json()
    assert browser.execute_script("return document.getElementById('parcoords').data[0].dimensions.length") == \
        len(OBJECTIVES) + len(points["parameters"])  # objectives and parameters
    # a real drag along the parity axis, over its middle half
    axis = browser.find_elements(By.CSS_SELECTOR, "#parcoords .axis-brush .background")[2]
    height = axis.size["height"]
    ActionChains(browser).move_to_element_with_offset(axis, 0, -height // 4).click_and_hold() \
        .move_by_offset(0, height // 2).release().perform()
    brushed = int(_wait(browser, "return document.getElementById('parcoords').dataset.brushed"))
    lo, hi = browser.execute_script("const r = document.getElementById('parcoords').data[0].dimensions[2]"
                                    ".constraintrange; return Array.isArray(r[0]) ? r[0] : r")
    inside = [i for i, v in zip(points["ids"], points["values"][2], strict=True) if lo <= v <= hi]
    assert 0 < brushed == len(inside) < len(points["ids"])
    _wait(browser, f"return document.getElementById('evaluations').dataset.total === '{len(inside)}'")
    assert sorted(_table_ids(browser)) == sorted(inside)
    assert "parity_accuracy" in browser.find_element(By.ID, "table-brush").text
    opacity = browser.execute_script("return document.getElementById('front').data[0].marker.opacity")
    ids = browser.execute_script("return document.getElementById('front').data[0].customdata")
    assert {i for i, o in zip(ids, opacity, strict=True) if o > 0.1} == set(inside)  # the others dimmed

    browser.find_element(By.ID, "brush-clear").click()
    _wait(browser, f"return document.getElementById('evaluations').dataset.total === '{len(points['ids'])}'")
    assert not browser.find_element(By.ID, "brush-caption").text


def test_constraints_and_weights_rank_the_front_and_recommend_a_point(browser: Any, job: dict[str, Any]) -> None:
    _open(browser, job)
    front = httpx.get(f"{job['url']}/v1/jobs/{job['id']}/pareto").json()["members"]
    parity = sorted(m["metrics"]["parity_accuracy"] for m in front)
    bound = round(parity[len(parity) // 2], 4)
    field = browser.find_element(By.ID, "constraints")
    field.send_keys(f"parity_accuracy >= {bound}")
    for key, weight in zip(OBJECTIVES, ["0", "1", "3"], strict=True):
        box = browser.find_element(By.CSS_SELECTOR, f"input.weight[data-objective='{key}']")
        box.clear()
        box.send_keys(weight)
    browser.find_element(By.ID, "rank").click()
    _wait(browser, "return document.getElementById('recommended').dataset.evaluationId")
    expected = httpx.get(f"{job['url']}/v1/jobs/{job['id']}/rank", params=[
        ("constraint", f"parity_accuracy >= {bound}"), ("weight", "rotated_accuracy=0"),
        ("weight", "inverted_accuracy=1"), ("weight", "parity_accuracy=3")]).json()
    rec = expected["recommended"]
    assert browser.find_element(By.ID, "recommended").get_attribute("data-evaluation-id") == str(rec["id"])
    assert rec["metrics"]["parity_accuracy"] >= bound
    assert f"evaluation #{rec['number']}" in browser.find_element(By.ID, "recommended-text").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranking-table tbody tr")
    assert [int(r.get_attribute("data-evaluation-id")) for r in rows] == \
        [i["evaluation"]["id"] for i in expected["items"]]
    symbols = browser.execute_script("const d = document.getElementById('front').data[0];"
                                     "return [d.customdata, d.marker.symbol]")
    assert [i for i, s in zip(*symbols, strict=True) if s == "star"] == [rec["id"]]  # marked on the front

    field.clear()
    field.send_keys("parity >= 0.5")  # no such column: the error says so next to the form, in words
    browser.find_element(By.ID, "rank").click()
    text = _wait(browser, "const e = document.getElementById('decide-error'); return !e.hidden && e.textContent")
    assert "no column 'parity'" in text and "parity_accuracy" in text and "{" not in text
    assert browser.find_element(By.ID, "error").get_attribute("hidden")


def test_two_to_four_points_compare_side_by_side_with_their_yaml_diff(browser: Any, job: dict[str, Any]) -> None:
    _open(browser, job)
    browser.find_element(By.ID, "rank").click()
    _wait(browser, "return document.querySelectorAll('#ranking-table tbody tr').length >= 3")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#ranking-table input.compare-box")
    assert browser.find_element(By.ID, "compare-run").get_attribute("disabled")
    boxes[0].click()
    boxes[2].click()
    chosen = [int(c.get_attribute("data-evaluation-id"))
              for c in browser.find_elements(By.CSS_SELECTOR, "#compare-picks .chip")]
    assert len(chosen) == 2
    browser.find_element(By.ID, "compare-run").click()
    _wait(browser, "return document.getElementById('compare-table')")
    expected = httpx.get(f"{job['url']}/v1/jobs/{job['id']}/compare", params=[("id", i) for i in chosen]).json()
    heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#compare-table thead th")][1:]
    assert heads == [f"#{e['number']}" for e in expected["items"]]
    body = browser.find_element(By.ID, "compare-table").text
    for ev in expected["items"]:
        for key in OBJECTIVES:
            assert f"{ev['metrics'][key]:.4f}" in body
    diff = browser.find_element(By.CSS_SELECTOR, "#compare pre.diff").text
    assert expected["diffs"][0] and diff.strip() == expected["diffs"][0].strip()
    assert "bench://digits/rotated" in expected["mergekit"][0] and "safetensors" not in diff  # no server paths


def test_importance_with_held_out_r2_and_the_predicted_front(browser: Any, job: dict[str, Any]) -> None:
    _open(browser, job)
    _wait(browser, "return document.getElementById('importance').dataset.loaded === '16'", timeout=120)
    out = httpx.get(f"{job['url']}/v1/jobs/{job['id']}/sensitivity", timeout=120).json()
    assert out["surrogate"] == "quadratic" and out["own"] and out["predicted_front"]
    for objective in out["objectives"]:
        key = objective["objective"]
        block = browser.find_element(By.CSS_SELECTOR, f".objective-importance[data-objective='{key}']")
        r2 = objective["r2"]
        assert f"held-out R² {'–' if r2 is None else f'{r2:.2f}'}" in block.text
        shown = [r.get_attribute("data-parameter") for r in block.find_elements(By.CSS_SELECTOR, "tr")]
        assert shown == [p["parameter"] for p in objective["parameters"]]  # largest effect first
    traces = browser.execute_script("return document.getElementById('front').data.map((t) => [t.name, "
                                    "t.dimensions ? t.dimensions[0].values.length : t.x.length])")
    assert ["predicted front (surrogate)", len(out["predicted_front"]["values"][0])] in traces


def test_csv_and_parquet_downloads_are_the_filtered_rest_files(browser: Any, job: dict[str, Any],
                                                               tmp_path: Path) -> None:
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    _open(browser, job)
    field = browser.find_element(By.ID, "filter")
    field.send_keys("rotated >= 0.5")  # typed as in the headers: no `metrics.` prefix, no such column
    field.submit()
    text = _wait(browser, "const e = document.getElementById('filter-error'); return !e.hidden && e.textContent")
    assert "no column 'rotated'" in text and "rotated_accuracy" in text
    assert browser.find_element(By.ID, "error").get_attribute("hidden")  # next to the filter, not atop the page
    field.clear()
    field.send_keys("rotated_accuracy >= 0.5")
    field.submit()
    _wait(browser, "return document.getElementById('filter-error').hidden")
    target, expected = _download(browser, tmp_path, job, "csv", "rotated_accuracy >= 0.5")
    got = target.read_text()
    assert got == expected.decode()
    rows = list(csv.DictReader(io.StringIO(got)))
    assert rows and all(float(r["rotated_accuracy"]) >= 0.5 for r in rows)

    import pyarrow.parquet as pq

    target, expected_parquet = _download(browser, tmp_path, job, "parquet", "rotated_accuracy >= 0.5")  # same query
    assert pq.read_table(target).equals(pq.read_table(io.BytesIO(expected_parquet)))
    assert pq.read_table(target).num_rows == len(rows)


def _download(browser: Any, folder: Path, job: dict[str, Any], kind: str, query: str) -> tuple[Path, bytes]:
    """Click the page's `download-{kind}` button; the file the browser saved in `folder` (waited for, up to 30 s)
    and the REST file of the same query (`evaluations.{kind}?filter=query`) to compare it with."""
    browser.find_element(By.ID, f"download-{kind}").click()
    target = folder / f"mergefront-job{job['id']}-evaluations.{kind}"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    expected = httpx.get(f"{job['url']}/v1/jobs/{job['id']}/evaluations.{kind}", params={"filter": query}).content
    return target, expected


def _click_redrawn(browser: Any, element_id: str) -> None:
    """Click a button the job page may redraw as it polls (a button found may be replaced before the click)."""
    for _ in range(5):
        try:
            browser.find_element(By.ID, element_id).click()
            return
        except StaleElementReferenceException:
            continue
    browser.find_element(By.ID, element_id).click()


def test_cancel_and_the_live_jobs_list_and_a_missing_job(browser: Any, job: dict[str, Any]) -> None:
    browser.get(job["url"])
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{job['id']}\"]')")
    browser.execute_script("window.__sameDocument = true")
    # submitted while the list is open, every job on it done; a long one, to be cancelled while it runs
    long_job = {**_spec(name="random", budget=2000, batch_size=2), "name": "submitted-later",
                "resources": {"workers": 1, "device": "cpu"}}
    with session_scope(job["sessions"]) as s:
        new_id = repo.create_job(session=s, spec=parse_spec(long_job)).id
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{new_id}\"]')", timeout=20)
    assert browser.execute_script("return window.__sameDocument") is True  # no reload

    browser.get(f"{job['url']}/jobs/{new_id}")
    _wait(browser, "return document.body.dataset.jobState === 'pending'")
    result: list[str] = []
    runner = threading.Thread(target=lambda: result.append(
        JobRunner(session_factory=job["sessions"], settings=job["settings"]).run(new_id)))
    runner.start()
    _wait(browser, "const k = (document.body.dataset.loaded || '').split(':');"
                   "return k[0] === 'running' && Number(k[1]) >= 2", timeout=120)
    _click_redrawn(browser, "cancel-job")
    browser.switch_to.alert.accept()
    _wait(browser, "return document.body.dataset.jobState === 'cancelled'")
    runner.join(timeout=120)
    assert result == ["cancelled"]  # the runner stopped at its next write
    stopped = httpx.get(f"{job['url']}/v1/jobs/{new_id}").json()
    assert stopped["state"] == "cancelled" and 2 <= stopped["n_completed"] < 2000  # its finished rows kept
    assert not browser.find_elements(By.ID, "cancel-job")
    _wait(browser, "return document.getElementById('front-caption').textContent.includes("
                   f"'of {stopped['n_completed']} completed')")  # the page shows what was kept

    browser.get(f"{job['url']}/jobs/987654")
    _wait(browser, "return document.body.dataset.missing === '1'")
    assert "does not exist" in browser.find_element(By.ID, "missing").text
    count = "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/v1/jobs/987654')).length"
    before = browser.execute_script(count)
    time.sleep(3.5)  # two polling periods
    assert browser.execute_script(count) == before  # a missing job is not polled


def _manage_error(browser: Any) -> str:
    return str(_wait(browser, "const e = document.getElementById('manage-error'); return !e.hidden && e.textContent"))


def test_rename_notes_and_delete_from_the_job_page_and_the_jobs_list(browser: Any, job: dict[str, Any],
                                                                     screenshots: Path) -> None:
    url = job["url"]
    with session_scope(job["sessions"]) as s:
        kept = repo.create_job(session=s, spec=parse_spec({**_spec(), "name": "to-rename"})).id
        listed = repo.create_job(session=s, spec=parse_spec({**_spec(), "name": "to-delete-from-the-list"})).id
    httpx.post(f"{url}/v1/jobs/{listed}/cancel").raise_for_status()
    browser.get(f"{url}/jobs/{kept}")
    _wait(browser, "return document.body.dataset.jobState === 'pending'")

    browser.find_element(By.ID, "rename-open").click()
    field = browser.find_element(By.ID, "rename-input")
    assert field.get_attribute("value") == "to-rename"
    field.clear()
    field.send_keys("   ")
    browser.find_element(By.ID, "rename-save").click()
    text = _manage_error(browser)  # next to the control, in words
    assert text.startswith("Renaming failed: name") and "at least 1 character" in text and "{" not in text
    assert browser.find_element(By.ID, "error").get_attribute("hidden")
    field.clear()
    field.send_keys("parity first")
    browser.find_element(By.ID, "rename-save").click()
    _wait(browser, "return document.getElementById('job-name').firstChild.textContent === 'parity first'")
    assert not browser.find_element(By.ID, "rename-form").is_displayed()
    assert not browser.find_element(By.ID, "manage-error").is_displayed()
    assert "parity first" in browser.find_element(By.ID, "crumb").text

    browser.find_element(By.ID, "notes-open").click()
    assert not browser.find_element(By.ID, "rename-form").is_displayed()
    browser.find_element(By.ID, "notes-input").send_keys("TIES beats DARE here\nseed 5")
    browser.find_element(By.ID, "notes-save").click()
    _wait(browser, "const n = document.getElementById('job-notes'); return n && n.textContent.startsWith('TIES')")
    assert not browser.find_element(By.ID, "notes-form").is_displayed()
    stored = httpx.get(f"{url}/v1/jobs/{kept}").json()
    assert (stored["name"], stored["notes"]) == ("parity first", "TIES beats DARE here\nseed 5")

    browser.find_element(By.ID, "delete-job").click()  # a pending job is cancelled first: said beside the button
    browser.switch_to.alert.accept()
    assert "is pending; cancel it first" in _manage_error(browser)
    browser.save_screenshot(str(screenshots / "job-manage.png"))
    assert httpx.get(f"{url}/v1/jobs/{kept}").status_code == 200

    browser.get(url)
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{kept}\"]')")
    browser.execute_script("window.__sameDocument = true")
    row = browser.find_element(By.CSS_SELECTOR, f"tr.job-row[data-job-id='{kept}']")
    shown = row.find_element(By.CSS_SELECTOR, ".job-notes")
    assert (shown.text, shown.get_attribute("title")) == ("TIES beats DARE here …", "TIES beats DARE here\nseed 5")
    assert "parity first" in row.text and not row.find_elements(By.CSS_SELECTOR, "button.delete-job")  # pending
    browser.find_element(By.CSS_SELECTOR, "#jobs th[data-sort='name']").click()  # sorted by name, A to Z
    by_name = sorted(httpx.get(f"{url}/v1/jobs").json()["items"], key=lambda j: j["name"])
    _wait(browser, "return [...document.querySelectorAll('tr.job-row')].map((r) => r.dataset.jobId).join() === "
                   f"'{','.join(str(j['id']) for j in by_name)}'")
    browser.find_element(By.ID, "search").send_keys("DARE")
    browser.find_element(By.CSS_SELECTOR, "#jobs-search button[type=submit]").click()
    _wait(browser, "const r = document.querySelectorAll('tr.job-row'); "
                   f"return r.length === 1 && r[0].dataset.jobId === '{kept}'")
    browser.find_element(By.ID, "search").clear()
    browser.find_element(By.CSS_SELECTOR, "#jobs-search button[type=submit]").click()
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{listed}\"]')")
    browser.find_element(By.CSS_SELECTOR, f"button.delete-job[data-job-id='{listed}']").click()
    browser.switch_to.alert.accept()
    _wait(browser, f"return !document.querySelector('tr.job-row[data-job-id=\"{listed}\"]')")
    assert httpx.get(f"{url}/v1/jobs/{listed}").status_code == 404
    assert browser.execute_script("return window.__sameDocument") is True  # no reload
    browser.save_screenshot(str(screenshots / "jobs-manage.png"))

    browser.get(f"{url}/jobs/{kept}")
    _wait(browser, "return document.body.dataset.jobState === 'pending'")
    _click_redrawn(browser, "cancel-job")
    browser.switch_to.alert.accept()
    _wait(browser, "return document.body.dataset.jobState === 'cancelled'")
    browser.find_element(By.ID, "delete-job").click()
    browser.switch_to.alert.accept()
    _wait(browser, "return document.body.dataset.missing === '1'")
    assert "was deleted" in browser.find_element(By.ID, "missing").text
    assert not browser.find_element(By.ID, "manage").is_displayed()
    assert httpx.get(f"{url}/v1/jobs/{kept}").status_code == 404
    browser.get(url)
    _wait(browser, f"return document.querySelector('tr.job-row[data-job-id=\"{job['id']}\"]')")
    assert not browser.find_elements(By.CSS_SELECTOR, f"tr.job-row[data-job-id='{kept}']")
