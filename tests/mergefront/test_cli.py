"""The CLI as a user meets it: one-line errors that name the file or field, help on every option, and the job
commands (jobs, front, evaluations, export, cancel, delete, rename, notes) on the local database."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import pytest
import yaml

from mergefront import Client, __version__
from mergefront.cli import _parser
from mergefront.cli import main as cli_main
from mergefront.errors import ConflictError, NotFoundError
from mergefront.service import repository as repo
from mergefront.service.app import create_app
from mergefront.service.db import session_scope
from mergefront.service.front import update_front
from mergefront.service.models import JobState
from mergefront.spec import parse_spec
from tests.dashboard.synthetic import build_job

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def cli(settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`cli(*argv)` -> (exit status, stdout, stderr), on the test's database and suite cache."""
    monkeypatch.setenv("MERGEFRONT_HOME", str(settings.home))
    monkeypatch.setenv("MERGEFRONT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("MERGEFRONT_CACHE_DIR", str(settings.resolved_cache_dir))
    monkeypatch.delenv("MERGEFRONT_URL", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli_main([*argv])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(n in lines[0] for n in needles), err


def test_mistakes_in_a_spec_file_are_one_line_naming_the_file(cli, tmp_path: Path, spec_data: dict) -> None:
    _one_line_error(cli("run", str(tmp_path / "missing.yaml"))[2], "missing.yaml", "does not exist")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodels:\n  base: bench://digits/base\n experts: []\n")
    status, _, err = cli("space", str(broken))
    assert status == 2
    _one_line_error(err, "broken.yaml", "not valid YAML", "line 4")
    spec_data["optimizer"]["budget"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_data))
    _one_line_error(cli("run", str(bad))[2], "optimizer.budget", "bad.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    _one_line_error(cli("run", str(listed))[2], "list.yaml", "not a spec")


def test_every_option_has_help_and_version_prints(cli, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "serve", "submit", "space", "jobs", "front", "evaluations", "export", "cancel", "delete",
            "rename", "notes"} <= set(commands)
    parsers = [(name, command) for name, command in commands.items()]
    for name, command in list(parsers):  # `token create|list|revoke`: one level deeper
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    for name, command in parsers:
        for action in command._actions:
            if not isinstance(action, argparse._SubParsersAction):  # its choices carry the help
                assert action.help, f"mergefront {name} {action.dest}: no help text"
    with pytest.raises(SystemExit):
        cli_main(["--version"])
    assert capsys.readouterr().out.strip() == f"mergefront {__version__}"


def test_job_commands_work_on_the_local_database(cli, sessions, tmp_path: Path) -> None:
    job_id = build_job(sessions, n=30, n_objectives=3, seed=4, history_points=5)
    status, out, _ = cli("jobs")
    assert status == 0 and out.splitlines()[0].split()[:4] == ["id", "name", "state", "done"]
    assert out.splitlines()[1].split()[:5] == [str(job_id), "synthetic-3obj-30", "completed", "30/30", "random"]
    assert cli("rename", str(job_id), "my digits")[1].strip() == f"job {job_id} is now named 'my digits'"
    assert cli("notes", str(job_id), "TIES, parity first")[0] == 0
    assert "my digits" in cli("jobs", "--search", "parity")[1] and cli("jobs", "--search", "nope")[1] == "no jobs\n"

    status, out, _ = cli("evaluations", str(job_id), "--csv", "-", "--filter", "rotated_accuracy >= 0.2")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and rows and all(float(r["rotated_accuracy"]) >= 0.2 for r in rows)
    assert {"number", "on_front", "parity_accuracy", "weight.parity", "finished_at"} <= set(rows[0])
    target = tmp_path / "front.parquet"
    assert cli("evaluations", str(job_id), "--parquet", str(target), "--front")[0] == 0
    import pyarrow.parquet as pq

    table = pq.read_table(target)
    assert table.num_rows == repo_front_size(sessions, job_id) and all(table.column("on_front").to_pylist())

    status, out, _ = cli("front", str(job_id), "--where", "parity_accuracy >= 0.3", "--weight", "rotated_accuracy=3")
    assert status == 0 and "meet parity_accuracy >= 0.3; weights rotated_accuracy=3" in out
    assert out.strip().splitlines()[-1].startswith("recommended: evaluation ")
    _one_line_error(cli("front", str(job_id), "--where", "parity >= 0.3")[2], "no column 'parity'", "did you mean")
    _one_line_error(cli("cancel", str(job_id))[2], "already completed")
    assert cli("delete", str(job_id))[1].strip() == f"job {job_id} deleted"
    _one_line_error(cli("front", str(job_id))[2], f"job {job_id} does not exist", "--url")


def test_job_commands_and_the_sdk_manage_jobs_on_a_server(cli, serve, settings, sessions, spec_data: dict,
                                                          make_token) -> None:
    job_id = build_job(sessions, n=12, n_objectives=2, seed=6, history_points=3)
    with session_scope(sessions) as s:
        pending = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    write, read = make_token("write"), make_token("read")
    with serve(create_app(settings, run_jobs=False)) as url:
        server = ("--url", url, "--token", write)
        assert cli("rename", str(job_id), "on the server", *server)[0] == 0
        assert cli("notes", str(job_id), "kept for the paper", *server)[0] == 0
        status, out, _ = cli("jobs", "--search", "paper", *server)
        assert status == 0 and [line.split()[:2] for line in out.splitlines()[1:]] == [[str(job_id), "on"]]
        _one_line_error(cli("rename", str(job_id), "x", "--url", url, "--token", read)[2], "scope read", "write")
        status, out, _ = cli("front", str(job_id), *server)
        assert status == 0 and f"Pareto front of job {job_id}:" in out
        with Client(url, token=write) as client:
            job = client.job(pending)
            assert job.rename("named by the SDK").name == "named by the SDK"
            assert job.set_notes("from Python").notes == "from Python"
            assert [j.id for j in client.jobs(search="python")] == [pending]
            with pytest.raises(ConflictError, match="cancel it first"):
                job.delete()
            assert job.cancel().state == "cancelled"
            assert job.set_notes(None).notes is None
            job.delete()
            with pytest.raises(NotFoundError):
                job.info()
        assert cli("delete", str(job_id), *server)[1].strip() == f"job {job_id} deleted"
        _one_line_error(cli("cancel", str(job_id), *server)[2], f"job {job_id} does not exist")


def test_export_of_a_checkpoint_shows_its_steps(cli, sessions, tmp_path: Path) -> None:
    job_id = build_job(sessions, n=6, n_objectives=2, seed=7, history_points=2)
    with session_scope(sessions) as s:
        evaluation_id = repo.pareto_out(session=s, job=repo.get_job(session=s, job_id=job_id)).members[0].id
    status, out, err = cli("export", str(evaluation_id), "--checkpoint", str(tmp_path / "merged"))
    assert status == 0 and out.strip() == f"evaluation {evaluation_id}: checkpoint written to {tmp_path / 'merged'}"
    steps = [p.strip() for p in err.replace("\r", "\n").splitlines() if p.strip()]
    assert steps and all(p.startswith("export:") for p in steps), steps  # a bar, and nothing else
    assert "5/5" in steps[-1] and "done" in steps[-1]  # the base, 2 experts, merging, writing
    assert any("loading expert 2 of 2" in p for p in steps) and any("merging" in p for p in steps)
    assert any((tmp_path / "merged").iterdir())


def repo_front_size(sessions, job_id: int) -> int:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as s:
        return len(repo.pareto_out(session=s, job=repo.get_job(session=s, job_id=job_id)).members)


def test_export_best_says_which_it_chose_and_how_ties_break(cli, sessions, spec_data: dict, tmp_path: Path) -> None:
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
        names = [f"{kind}.{task}" for kind in ("weight", "density") for task in ("rotated", "inverted", "parity")]
        rows = repo.add_evaluations(session=s, job_id=job_id, points=[
            ([0.2 * i] * 6, dict.fromkeys(names, 0.2 * i)) for i in range(1, 4)])
        # two members tie at the best rotated accuracy; the first evaluated (#0) is taken
        for row, values in zip(rows, [(0.9, 0.1, 0.5), (0.9, 0.2, 0.4), (0.5, 0.5, 0.5)], strict=True):
            repo.start_evaluation(session=s, evaluation_id=row.id)
            repo.complete_evaluation(session=s, evaluation_id=row.id, metrics=dict(zip(
                ["rotated_accuracy", "inverted_accuracy", "parity_accuracy"], values, strict=True)), worker="w",
                merge_seconds=0.0, eval_seconds=0.0)
        update_front(session=s, job_id=job_id)
        repo.finish_job(session=s, job_id=job_id, state=JobState.completed)
    status, out, err = cli("export", "--job", str(job_id), "--best", "rotated_accuracy", "--mergekit", "-")
    assert status == 0 and "merge_method: ties" in out
    assert f"evaluation {rows[0].id} (#0) has the front's best rotated_accuracy, 0.9" in err
    assert "2 front members tie at that value, and the one evaluated first is taken" in err
    _one_line_error(cli("export", "--job", str(job_id), "--best", "speed", "--mergekit", "-")[2], "no objective")
    _one_line_error(cli("export", str(rows[0].id), "--mergekit", str(tmp_path / "nodir" / "e.yaml"))[2],
                    "No such file or directory", "nodir")
