"""The memory plan at the edges: a job that cannot fit is refused at submission with its numbers; `space` (REST
and CLI) shows the plan of a stored job before it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mergefront.cli import main
from tests.evaluators.synthetic import synthetic_llama


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sl = synthetic_llama()
    return sl.ensure_checkpoints(sl.LlamaShape(layers=1, hidden=64, intermediate=128, vocab=512, heads=4),
                                 tmp_path_factory.mktemp("llama"), n_experts=2)


def _spec(llama: Path, **resources: object) -> dict:
    return {"models": {"base": str(llama / "base"), "experts": [str(llama / "expert0"), str(llama / "expert1")]},
            "merge": {"method": "ties", "weight": {"low": 0.0, "high": 1.0}, "density": 0.5},
            "objectives": [{"evaluator": "sparsity"}],
            "resources": {"device": "cuda", **resources}}


def test_a_job_that_cannot_fit_is_refused_with_its_numbers(api, settings, llama: Path) -> None:  # type: ignore[no-untyped-def]
    roots = settings.model_copy(update={"model_roots": [llama]})  # the server reads models only under its roots
    with api(roots, run_jobs=False) as client:
        refused = client.post("/v1/jobs", json=_spec(llama, device_memory="2MB"))
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"][0]
        assert detail["loc"] == ["body", "resources", "device_memory"]
        assert "no placement fits" in detail["msg"] and "device 2 MB" in detail["msg"]
        assert "mmap needs device" in detail["msg"]
        bad = client.post("/v1/jobs", json=_spec(llama, host_memory="lots"))
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:3] == ["body", "resources", "host_memory"]
        assert client.get("/v1/jobs").json()["total"] == 0
        job = client.post("/v1/jobs", json=_spec(llama, device_memory="24GB", placement="stream")).json()
        memory = client.get(f"/v1/jobs/{job['id']}/space").json()["memory"]
        assert memory["placement"] == "stream" and memory["device_limit"] == 24 * 10**9
        assert [o["placement"] for o in memory["options"]] == ["resident", "resident", "stream", "mmap"]
        assert "per worker: device" in memory["description"] and "of 24 GB" in memory["description"]


def test_cli_space_prints_the_plan_first(llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec(llama, device_memory="80GB")))
    assert main(["space", str(spec)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("memory plan (2 experts") and "of 80 GB" in out[0] and "placement: resident" in out[0]
    assert any(line.startswith("search space: 2 dimensions") for line in out)


def test_a_job_whose_workers_cannot_fit_fails_at_their_start_with_the_numbers(api, settings, llama: Path,  # type: ignore[no-untyped-def]
                                                                            wait_for_job) -> None:
    # planned for a GPU at submission (device auto: the host holds only what loading needs, under 1 MB here); the
    # worker, on this CPU, holds everything in host memory and refuses before loading anything
    spec = {**_spec(llama, host_memory="1MB"), "optimizer": {"name": "random", "budget": 2, "batch_size": 1}}
    spec["resources"] = {**spec["resources"], "device": "auto", "workers": 1}
    roots = settings.model_copy(update={"model_roots": [llama]})
    with api(roots) as client:
        job = client.post("/v1/jobs", json=spec)
        assert job.status_code == 201, job.text
        failed = wait_for_job(client, job.json()["id"], timeout=300)
    assert failed["state"] == "failed"
    error = failed["error"]
    assert error.startswith("WorkerRefusedError: resources.host_memory: a worker cannot start: no placement fits")
    assert "host 1 MB" in error and "resident with ranks needs device" in error and "Traceback" not in error


def test_cli_submit_prints_the_plan_first(settings, llama: Path, tmp_path: Path, admin_token: str, serve,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture) -> None:
    from mergefront.service.app import create_app

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec(llama, device_memory="24GB", placement="stream")))
    with serve(create_app(settings.model_copy(update={"model_roots": [llama]}), run_jobs=False)) as url:
        assert main(["submit", str(spec), "--url", url, "--token", admin_token]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("submitted job 1 to http://127.0.0.1:")
    assert out[1].startswith("memory plan (2 experts") and "of 24 GB" in out[1] and "placement: stream" in out[1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_and_submit_wait_exit_non_zero_saying_why_their_job_failed(settings, llama: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                       admin_token: str, serve,
                                                                       capsys: pytest.CaptureFixture) -> None:
    from mergefront.service.app import create_app

    # a real failure: the worker cannot hold the job in 1 MB of host memory and refuses at its start
    spec = {**_spec(llama, host_memory="1MB"), "optimizer": {"name": "random", "budget": 2, "batch_size": 1}}
    spec["resources"] = {**spec["resources"], "device": "auto", "workers": 1}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--db", settings.resolved_database_url]) == 2
    assert "error: job 1 ended failed: WorkerRefusedError: resources.host_memory" in capsys.readouterr().err
    with serve(create_app(settings.model_copy(update={"model_roots": [llama]}))) as url:
        assert main(["submit", str(path), "--url", url, "--token", admin_token, "--wait"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("submitted job 2")
    assert "error: job 2 ended failed: WorkerRefusedError: resources.host_memory" in err, err[-2000:]
