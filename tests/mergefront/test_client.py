"""The SDK as a user meets it: documented methods, every 422 error kept, retried connections, spec files read as
`run` reads them, evaluations as CSV, Parquet and a DataFrame."""

from __future__ import annotations

import http.server
import inspect
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

import mergefront
from mergefront import Client, InvalidSpecError, Job
from tests.dashboard.synthetic import build_job


def test_every_public_method_has_a_docstring_with_an_example() -> None:
    for cls in (Client, Job):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_"):
                continue
            doc = member.__doc__ or ""
            assert doc.strip(), f"{cls.__name__}.{name} has no docstring"
            examples = [line for line in doc.splitlines() if line.startswith(" " * 12)]  # indented past the text
            assert examples or name == "close", f"{cls.__name__}.{name}: no example in its docstring"
    assert (Path(mergefront.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_422_error_is_kept(api, spec_data: dict) -> None:
    spec_data["optimizer"]["budget"] = 0
    spec_data["resources"]["workers"] = 0
    with api(run_jobs=False) as http, Client("http://test", http=http) as client:
        with pytest.raises(InvalidSpecError) as info:
            client.submit(spec_data)
    locs = {loc[:2] for loc, _ in info.value.errors}
    assert {("optimizer", "budget"), ("resources", "workers")} <= locs
    assert "optimizer.budget" in str(info.value) and "resources.workers" in str(info.value)


def test_a_spec_file_is_submitted_with_its_paths_resolved_as_run_resolves_them(tmp_path: Path) -> None:
    spec = {"models": {"base": "models/base", "experts": ["models/a", "/abs/b"]}, "merge": {"method": "ties"},
            "objectives": [{"evaluator": "causal_lm", "settings": {"data": "data/a.jsonl"}}]}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    sent: list[dict] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(422, json={"detail": [{"loc": ["body", "models"], "msg": "stop here"}]})

    with Client("http://test", http=httpx.Client(base_url="http://test", transport=httpx.MockTransport(server))) \
            as client, pytest.raises(InvalidSpecError):
        client.submit(tmp_path / "job.yaml")
    assert sent[0]["models"] == {"base": str(tmp_path / "models/base"),
                                 "experts": [str(tmp_path / "models/a"), "/abs/b"]}
    assert sent[0]["objectives"][0]["settings"]["data"] == str(tmp_path / "data/a.jsonl")


def test_a_refused_connection_is_retried_until_the_server_is_up() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Jobs(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            body = json.dumps({"total": 0, "offset": 0, "limit": 50, "items": []}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def start_late() -> None:
        time.sleep(0.8)
        with http.server.HTTPServer(("127.0.0.1", port), Jobs) as server:
            server.handle_request()

    threading.Thread(target=start_late, daemon=True).start()
    with Client(f"http://127.0.0.1:{port}", retries=4) as client:
        assert client.jobs() == []
    with Client(f"http://127.0.0.1:{port}", retries=0) as client, pytest.raises(mergefront.MergefrontError,
                                                                                match="cannot reach"):
        client.jobs()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_evaluations_come_as_csv_parquet_and_a_dataframe(api, sessions, tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    job_id = build_job(sessions, n=40, n_objectives=2, seed=5, history_points=4)
    with api(run_jobs=False) as http, Client("http://test", http=http) as client:
        job = client.job(job_id)
        rows = job.evaluations()
        frame = job.evaluations_frame()
        front = job.evaluations_frame(front=True)
        csv_text = job.download_evaluations(tmp_path / "all.csv").decode()
        parquet = job.download_evaluations(tmp_path / "f.parquet", filters=["rotated_accuracy > 0.5"])
    assert list(frame["number"]) == [r.number for r in rows]
    assert list(frame["rotated_accuracy"]) == [r.metrics["rotated_accuracy"] for r in rows]  # exact: float64
    assert list(frame["weight.rotated"]) == [r.params["weight.rotated"] for r in rows]
    assert str(frame["finished_at"].dt.tz) == "UTC"
    assert front["on_front"].all() and len(front) == sum(frame["on_front"])
    assert csv_text.splitlines()[0].startswith('"id","number","state","on_front","rotated_accuracy"')
    assert len(csv_text.splitlines()) == 41 and (tmp_path / "all.csv").read_text() == csv_text
    chosen = pandas.read_parquet(tmp_path / "f.parquet")
    assert parquet[:4] == b"PAR1" and (chosen["rotated_accuracy"] > 0.5).all()
    assert len(chosen) == sum(frame["rotated_accuracy"] > 0.5)
