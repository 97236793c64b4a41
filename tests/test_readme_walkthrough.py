"""The README's "Search merges of your own models" walk-through runs as written, on a fresh home."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mergefront.local_server import free_port, wait_until_serving
from tests.quoted import quoted_for_this_cpu

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def walkthrough_commands(marker: str = "walkthrough") -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)```\n<!-- /{marker} -->", readme, re.S)
    assert block, f"README has no {marker} block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_walkthrough_runs_as_written(tmp_path: Path, cache_dir: Path) -> None:
    commands = walkthrough_commands()
    assert commands[0] == "make install" and commands[-1].endswith("mergefront run examples/own_models/job.yaml")
    made = [ROOT / "examples" / "own_models" / name for name in ("models", "data")]
    existed = [p.exists() for p in made]
    # a fresh home; the suite cache is the session's (tinylm is built once per test run, not once per test)
    env = {**os.environ, "MERGEFRONT_HOME": str(tmp_path), "MERGEFRONT_CACHE_DIR": str(cache_dir)}
    try:
        outputs = [subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=900) for command in commands]
    finally:
        for path, was_there in zip(made, existed, strict=True):
            if not was_there:
                shutil.rmtree(path, ignore_errors=True)
    for command, out in zip(commands, outputs, strict=True):
        assert out.returncode == 0, f"{command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    printed = outputs[-1].stdout
    front = re.search(r"Pareto front of job \d+: (\d+) of 32 completed evaluations, hypervolume ([0-9.e-]+)", printed)
    assert front, printed[-3000:]
    assert int(front.group(1)) >= 2 and float(front.group(2)) > 0
    assert "copy_loss  reverse_exact_match  storage_mb" in printed
    readme = (ROOT / "README.md").read_text()
    quoted = quoted_for_this_cpu(readme, r"Pareto front of job 1: \d+ of 32 completed evaluations",
                                 "the README's walk-through front")
    _assert_same_front(quoted.splitlines(), printed.splitlines())


FRONT_LINE = re.compile(r"Pareto front of job 1: (\d+) of 32 completed evaluations, hypervolume ([0-9.e-]+) "
                        r"\(reference point \[(.*)\]\)")


def _assert_same_front(quoted: list[str], printed: list[str]) -> None:
    """The walk-through's quoted front is a fresh run's: the same size and quoted members, its hypervolume and inferred
    reference point to 1e-3 (the evaluator's float sums may differ in the last digits with the machine's threads)."""
    said = FRONT_LINE.match(quoted[0])
    got = next((m for m in map(FRONT_LINE.match, printed) if m), None)
    assert said and got, (quoted[0], printed[-40:])
    assert said.group(1) == got.group(1), (quoted[0], got.group(0))
    assert float(said.group(2)) == pytest.approx(float(got.group(2)), rel=1e-3), (quoted[0], got.group(0))
    assert [float(v) for v in said.group(3).split(",")] == pytest.approx(
        [float(v) for v in got.group(3).split(",")], rel=1e-3, abs=1e-6), (quoted[0], got.group(0))
    start = printed.index(got.group(0))
    members = {line.split()[0] for line in printed[start + 2:start + 2 + int(got.group(1))]}
    assert {row.split()[0] for row in quoted[2:]} <= members, (quoted, printed[start:start + 12])


def test_readme_demo_output_is_what_a_fresh_run_prints(tmp_path: Path, cache_dir: Path) -> None:
    """The demo's quoted front (its size, hypervolume and rows, abridged with "...") is a fresh run's output."""
    readme = (ROOT / "README.md").read_text()
    quoted = quoted_for_this_cpu(readme, r"Pareto front of job 1: \d+ of 64 completed evaluations",
                                 "the README's demo front").splitlines()
    env = {**os.environ, "MERGEFRONT_HOME": str(tmp_path), "MERGEFRONT_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([str(Path(sys.executable).parent / "mergefront"), "run", "examples/digits.yaml"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    _check_progress_bar(out.stderr, budget=64)
    _assert_quoted(quoted, out.stdout.splitlines())


def _assert_quoted(quoted: list[str], printed: list[str]) -> None:
    """The quoted front's first line is printed as is; its header and rows (cut at " ...") start printed lines."""
    assert quoted[0] in printed, f"README: {quoted[0]}\nprinted: {[p for p in printed if 'Pareto' in p]}"
    for row in quoted[1:]:
        assert any(line.startswith(row.removesuffix(" ...").rstrip()) for line in printed), (row, printed[-40:])


def _check_progress_bar(stderr: str, budget: int) -> None:
    """`run`'s bar starts at 0 once the workers are up (so its rate and ETA count evaluations only), ends at the
    budget, and nothing is printed inside it (Ray's token-authentication advice came on every run)."""
    assert "Token authentication" not in stderr, stderr[-3000:]
    pieces = [p.strip() for p in stderr.replace("\r", "\n").splitlines() if p.strip()]
    bar = [i for i, p in enumerate(pieces) if p.startswith("job 1:")]
    assert bar, stderr[-3000:]
    assert f"| 0/{budget} [00:00<?" in pieces[bar[0]]  # started at zero, before any evaluation came back
    assert f"| {budget}/{budget} [" in pieces[bar[-1]]
    inside = [p for p in pieces[bar[0]:bar[-1] + 1] if not p.startswith("job 1:")]
    assert not inside, inside[:10]


def test_the_digits_build_table_in_the_docs_is_what_a_fresh_build_prints(tmp_path: Path) -> None:
    """docs/suites.md quotes the table `python -m mergefront.evaluators.suites.digits DIR` prints (seed 0); its
    progress goes to stderr."""
    page = (ROOT / "docs" / "suites.md").read_text()
    quoted = quoted_for_this_cpu(page, r"task +base +expert +merge 1/N +merge sum\nrotated ",
                                 "docs/suites.md's digits build table")
    out = subprocess.run([sys.executable, "-m", "mergefront.evaluators.suites.digits", str(tmp_path / "digits")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = out.stderr.replace("\r", "\n").splitlines()  # the build says what it does while it works
    assert steps[0] == "building bench://digits (once: later jobs read it from the cache)", out.stderr[-2000:]
    assert any(line.startswith("bench://digits training: 100%") and "1200/1200" in line for line in steps)
    printed = [line.rstrip() for line in out.stdout.splitlines()]
    for line in quoted.splitlines():
        assert line.rstrip() in printed, (line, out.stdout[-2000:])


def test_the_tours_rest_step_works_as_written_with_the_token_the_tour_makes(tmp_path: Path) -> None:
    """The tour makes a token before anything talks to the server, and its REST line answers with it (and only with
    it). Its server runs on a free port instead of 8000; the demo and the submitted job are left to other tests."""
    commands = walkthrough_commands("tour")
    token_at = next(i for i, c in enumerate(commands) if "mergefront token create" in c)
    talks = [i for i, c in enumerate(commands) if c.startswith(("curl", ".venv/bin/mergefront submit"))]
    assert talks and min(talks) > token_at, commands
    serve = next(c for c in commands if c.startswith(".venv/bin/mergefront serve"))
    curl = next(c for c in commands if c.startswith("curl")).replace(":8000/", f":{(port := free_port())}/")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MERGEFRONT_", "RAY_"))},
           "MERGEFRONT_HOME": str(tmp_path)}
    server = subprocess.Popen(["bash", "-c", f"exec {serve} --port {port}"], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", timeout=120, process=server)
        status = " -s -o /dev/null -w '%{http_code}'"
        with_token = subprocess.run(["bash", "-c", f"{commands[token_at]} && {curl}{status}"], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=120)
        without = subprocess.run(["bash", "-c", f"{curl}{status}"], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=120)
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert (with_token.returncode, with_token.stdout) == (0, "200"), with_token.stderr[-2000:]
    assert without.stdout == "401"
