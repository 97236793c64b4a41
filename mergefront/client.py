"""The Python SDK: submit a spec, follow its job, read and download its evaluations, manage it.

    from mergefront import Client

    with Client("http://127.0.0.1:8000") as client:
        job = client.submit("examples/digits.yaml")
        job.wait()
        print(job.pareto().hypervolume)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from mergefront.errors import (
    AuthenticationError,
    ConflictError,
    InvalidSpecError,
    MergefrontError,
    NotFoundError,
    PermissionDeniedError,
)
from mergefront.schemas import (
    CompareOut,
    EvaluationOut,
    EvaluatorOut,
    JobOut,
    JobPage,
    NewTokenOut,
    Page,
    ParetoOut,
    RankingOut,
    SpaceOut,
    SurrogatesOut,
    TokenOut,
)
from mergefront.spec import JobSpec

if TYPE_CHECKING:
    import pandas

DEFAULT_URL = "http://127.0.0.1:8000"
#: how many times an idempotent request is tried again after a 503
RETRIES = 5
TableFormat = Literal["csv", "parquet"]


class Client:
    """A client of one mergefront server.

    `url` defaults to $MERGEFRONT_URL, else http://127.0.0.1:8000; `token` (default: $MERGEFRONT_TOKEN) is sent
    with every request. A refused connection is retried `retries` times (with growing pauses) before
    MergefrontError says the server cannot be reached.

        with Client() as client:
            for job in client.jobs(search="digits"):
                print(job.id, job.name, job.state)
    """

    def __init__(self, url: str | None = None, *, token: str | None = None, timeout: float = 30.0,
                 retries: int = 3, http: httpx.Client | None = None) -> None:
        self.url = (url or os.environ.get("MERGEFRONT_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("MERGEFRONT_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout, headers=headers,
                                          transport=httpx.HTTPTransport(retries=retries))
        if http is not None and token:
            self._http.headers["Authorization"] = f"Bearer {token}"

    def submit(self, spec: JobSpec | Mapping[str, Any] | str | Path) -> Job:
        """Queue a job from a spec object, a mapping, or a YAML/JSON file; return its handle.

        A file's relative model and data paths are relative to the file's folder, as for `mergefront run`.
        Raises InvalidSpecError with every problem the server found (`.errors`).

            job = client.submit("examples/digits.yaml")
        """
        if isinstance(spec, JobSpec):
            body: Any = spec.model_dump(mode="json")
        elif isinstance(spec, str | Path):
            from mergefront.spec_file import read_spec_file

            body = read_spec_file(spec)
        else:
            body = dict(spec)
        return Job(self, JobOut.model_validate(self._request("POST", "/v1/jobs", json=body)).id)

    def job(self, job_id: int) -> Job:
        """A handle on job `job_id` (nothing is fetched until you ask).

            client.job(3).info().state
        """
        return Job(self, job_id)

    def jobs(self, *, search: str | None = None, state: str | None = None, sort: str = "id",
             descending: bool = True, offset: int = 0, limit: int = 50) -> list[JobOut]:
        """Jobs, newest first: `search` words of their names and notes, keep one `state`, `sort` by id, name,
        state, optimizer, created_at or finished_at.

            running = client.jobs(state="running")
        """
        params: dict[str, Any] = {"offset": offset, "limit": limit, "sort": sort, "descending": descending}
        params.update({k: v for k, v in (("search", search), ("state", state)) if v})
        return JobPage.model_validate(self._request("GET", "/v1/jobs", params=params)).items

    def evaluators(self) -> list[EvaluatorOut]:
        """The evaluators a job may name on this server: built-ins, external and registered plug-ins.

            [e.name for e in client.evaluators() if e.kind == "plugin"]
        """
        return [EvaluatorOut.model_validate(e) for e in self._request("GET", "/v1/evaluators")]

    def create_token(self, name: str, scope: str = "read", expires_days: float | None = None) -> NewTokenOut:
        """Make a token (needs an admin token); its `token` is shown this once.

            ci_token = client.create_token("ci", scope="write").token
        """
        body = {"name": name, "scope": scope, "expires_days": expires_days}
        return NewTokenOut.model_validate(self._request("POST", "/v1/tokens", json=body))

    def tokens(self) -> list[TokenOut]:
        """Every token (its prefix, never the token itself; needs an admin token).

            [t.name for t in client.tokens() if t.revoked_at is None]
        """
        return [TokenOut.model_validate(t) for t in self._request("GET", "/v1/tokens")]

    def revoke_token(self, token_id: int) -> TokenOut:
        """Revoke a token at once (needs an admin token).

            client.revoke_token(3)
        """
        return TokenOut.model_validate(self._request("DELETE", f"/v1/tokens/{token_id}"))

    def close(self) -> None:
        """Close the connection pool (a `with Client() as client:` block does it for you)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        """One request; an idempotent one (GET, tell) is tried again while the server answers 503 (its database
        was unavailable: nothing was acknowledged), waiting as its Retry-After says, up to RETRIES times."""
        again = RETRIES if (method == "GET" if idempotent is None else idempotent) else 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise MergefrontError(f"cannot reach mergefront at {self.url}: {exc}") from exc
            if response.status_code < 400:
                return response
            if response.status_code != 503 or again <= 0:
                raise _error(response)
            again -= 1
            time.sleep(min(float(response.headers.get("retry-after", "1") or 1), 30.0))

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield response
        except httpx.HTTPError as exc:
            raise MergefrontError(f"cannot reach mergefront at {self.url}: {exc}") from exc

    def _request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> Any:
        response = self._send(method, path, idempotent=idempotent, **kwargs)
        return None if response.status_code == 204 else response.json()


def _error(response: httpx.Response) -> MergefrontError:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if response.status_code == 422 and isinstance(detail, list) and detail:
        problems = [([p for p in d.get("loc", []) if p not in ("body", "query")], str(d.get("msg"))) for d in detail]
        (loc, message), *more = problems
        return InvalidSpecError(message, loc, more)
    cls = {401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
           409: ConflictError}.get(response.status_code, MergefrontError)
    known = response.status_code in (401, 403, 404, 409)
    return cls(str(detail) if known else f"HTTP {response.status_code}: {detail}")


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as JSON numbers (numpy and torch scalars welcome); JSON has no NaN or infinity, so those are refused."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise InvalidSpecError(f"{value!r} is not a number", ("metrics", key)) from None
        if not math.isfinite(out[key]):
            raise InvalidSpecError(f"{value} is not a finite number", ("metrics", key))
    return out


def _table_query(state: str | None, front: bool, filters: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {"filter": list(filters)} if filters else {}
    if state:
        params["state"] = state
    if front:
        params["front"] = True
    return params


class Job:
    """A handle on one job of a server; every method asks the server afresh."""

    def __init__(self, client: Client, job_id: int) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job(id={self.id}, url={self.client.url!r})"

    def _path(self, suffix: str = "") -> str:
        return f"/v1/jobs/{self.id}{suffix}"

    def info(self) -> JobOut:
        """The job: state, progress counts, hypervolume, notes, spec.

            job.info().n_completed
        """
        return JobOut.model_validate(self.client._request("GET", self._path()))

    def space(self) -> SpaceOut:
        """The job's search space (its dimension and the meaning of each coordinate).

            [p.name for p in job.space().parameters]
        """
        return SpaceOut.model_validate(self.client._request("GET", self._path("/space")))

    def space_description(self) -> str:
        """The memory plan per worker (or why there is none yet), then the search space as the CLI prints it, one
        line per coordinate.

            print(job.space_description())
        """
        from mergefront.report import format_space

        space = self.space()
        plan = space.memory.description if space.memory is not None else f"memory plan: {space.memory_note}"
        text = format_space([(p.name, p.low, p.high, p.description) for p in space.parameters])
        return "\n".join([plan, text, *(f"  {line}" for line in space.notes)])

    def surrogates(self) -> SurrogatesOut:
        """The job's surrogates refitted on its completed evaluations, with each one's leave-one-out R².

            {s.objective: s.r2 for s in job.surrogates().objectives}
        """
        return SurrogatesOut.model_validate(self.client._request("GET", self._path("/surrogates")))

    def pareto(self, n_completed: int | None = None) -> ParetoOut:
        """The latest Pareto front: its members (parameters and metrics) and its hypervolume; with `n_completed`,
        the front as it was after that many completed evaluations. A member evaluated more than once
        (`optimizer.reevaluate`) has the mean over its evaluations as `metrics`, with `metrics_std`, `metrics_min`,
        `metrics_max`, `n_evaluations` and `evaluation_ids`.

            best = max(job.pareto().members, key=lambda m: m.metrics["parity_accuracy"])
            early = job.pareto(n_completed=20)
        """
        params = {} if n_completed is None else {"n_completed": n_completed}
        return ParetoOut.model_validate(self.client._request("GET", self._path("/pareto"), params=params))

    def rank(self, constraints: Sequence[str] = (), weights: Mapping[str, float] | Sequence[str] = (), *,
             limit: int = 100) -> RankingOut:
        """The front members that meet every constraint, best first by a preference (a weight per objective,
        1 where not given; a mapping, or strings such as "parity_accuracy=2"); `recommended` is the first.
        Scores are weighted means of objectives scaled to [0, 1] over the feasible members; equal scores go to
        the member evaluated first.

            pick = job.rank(["parity_accuracy >= 0.8"], {"rotated_accuracy": 2}).recommended
        """
        pairs = [f"{k}={v}" for k, v in weights.items()] if isinstance(weights, Mapping) else list(weights)
        params: dict[str, Any] = {"constraint": list(constraints), "limit": limit, "weight": pairs}
        return RankingOut.model_validate(self.client._request("GET", self._path("/rank"), params=params))

    def best(self, objective: str) -> EvaluationOut:
        """The front member with the best value of one objective (ties: the one evaluated first).

            job.best("parity_accuracy").params
        """
        info = self.info()
        weights = {k: (1.0 if k == objective else 0.0) for k in info.objectives}
        if objective not in weights:
            raise InvalidSpecError(f"job {self.id} has no objective {objective!r}; it has {info.objectives}",
                                   ("best",))
        ranking = self.rank(weights=weights, limit=1)
        if ranking.recommended is None:
            raise NotFoundError(f"job {self.id} has no completed evaluation yet")
        return ranking.recommended

    def compare(self, evaluation_ids: Sequence[int]) -> CompareOut:
        """2 to 4 evaluations side by side: their rows, mergekit YAMLs and each YAML's diff against the first.

            print(job.compare([17, 23]).diffs[0])
        """
        params = {"id": list(evaluation_ids)}
        return CompareOut.model_validate(self.client._request("GET", self._path("/compare"), params=params))

    def evaluations(self, state: str | None = None, page_size: int = 500) -> list[EvaluationOut]:
        """Every evaluation of the job in the order they were proposed (fetched page by page).

            failed = job.evaluations(state="failed")
        """
        items: list[EvaluationOut] = []
        while True:
            params: dict[str, Any] = {"offset": len(items), "limit": page_size}
            if state:
                params["state"] = state
            page = Page.model_validate(self.client._request("GET", self._path("/evaluations"), params=params))
            items += page.items
            if len(items) >= page.total or not page.items:
                return items

    def download_evaluations(self, path: str | Path | None = None, *, format: TableFormat | None = None,
                             state: str | None = None, front: bool = False, filters: Sequence[str] = ()) -> bytes:
        """The evaluations as a CSV or Parquet file (one row each; objectives and parameters as columns).

        `format` defaults to the suffix of `path`, else CSV; `state`, `front` (front members only) and `filters`
        (e.g. "parity_accuracy >= 0.8") choose rows as the dashboard's table does. Writes `path` when given;
        returns the file's bytes.

            job.download_evaluations("job3.parquet", front=True)
        """
        fmt = format or ("parquet" if path is not None and Path(path).suffix == ".parquet" else "csv")
        response = self.client._send("GET", self._path(f"/evaluations.{fmt}"),
                                     params=_table_query(state, front, filters))
        if path is not None:
            Path(path).write_bytes(response.content)
        return response.content

    def evaluations_frame(self, *, state: str | None = None, front: bool = False,
                          filters: Sequence[str] = ()) -> pandas.DataFrame:
        """The evaluations as a pandas DataFrame (needs pandas: `pip install pandas`), one row each.

            df = job.evaluations_frame(front=True)
            df.sort_values("parity_accuracy", ascending=False).head()
        """
        try:
            import io

            import pandas
        except ImportError:
            raise MergefrontError("evaluations_frame() needs pandas (pip install pandas); download_evaluations() "
                                  "gives the same table as CSV or Parquet without it") from None
        data = self.download_evaluations(format="parquet", state=state, front=front, filters=filters)
        return pandas.read_parquet(io.BytesIO(data))

    def cancel(self) -> JobOut:
        """Stop the job: finished evaluations are kept, running candidates abandoned; returns it, cancelled.

            job.cancel().state  # 'cancelled'
        """
        return JobOut.model_validate(self.client._request("POST", self._path("/cancel")))

    def delete(self) -> None:
        """Delete the job with all its evaluations (a pending or running job must be cancelled first).

            job.cancel(); job.delete()
        """
        self.client._request("DELETE", self._path())

    def rename(self, name: str) -> JobOut:
        """Give the job a new name (the stored spec keeps the name it was submitted with).

            job.rename("digits, TIES, seed 3")
        """
        return JobOut.model_validate(self.client._request("PATCH", self._path(), json={"name": name}))

    def set_notes(self, notes: str | None) -> JobOut:
        """Replace the job's notes (None removes them); the jobs list searches them.

            job.set_notes("baseline for the parity experts")
        """
        return JobOut.model_validate(self.client._request("PATCH", self._path(), json={"notes": notes}))

    def ask(self, n: int = 1) -> list[EvaluationOut]:
        """Fetch up to `n` candidates of an external job to evaluate (none once its budget is spent).

        Each has an `id`, a `number` and its merge `params`; tell its result before its `expires_at` (UTC).

            for candidate in job.ask(4):
                job.tell(candidate, {"my_score": score(candidate.params)})
        """
        rows = self.client._request("POST", self._path("/ask"), json={"n": n})
        return [EvaluationOut.model_validate(r) for r in rows]

    def tell(self, candidate: EvaluationOut | int, metrics: Mapping[str, float] | None = None, *,
             error: str | None = None) -> EvaluationOut:
        """Report a candidate's metrics (a value per objective), or the `error` that kept it from being evaluated.

        Telling the same result twice is harmless; a different one, or a tell after the candidate expired, raises
        ConflictError; a missing, unknown or non-finite metric raises InvalidSpecError naming it.

            job.tell(candidate, error="out of memory")
        """
        evaluation_id = candidate if isinstance(candidate, int) else candidate.id
        body = {"metrics": None if metrics is None else _numbers(metrics), "error": error}
        raw = self.client._request("POST", f"/v1/evaluations/{evaluation_id}/tell", json=body, idempotent=True)
        return EvaluationOut.model_validate(raw)

    def wait(self, *, progress: bool = True, poll: float = 1.0, timeout: float | None = None) -> JobOut:
        """Block until the job completes, fails or is cancelled, showing a progress bar; return its final state.

            final = job.wait(timeout=600)
        """
        from tqdm.auto import tqdm

        info = self.info()
        deadline = None if timeout is None else time.monotonic() + timeout
        with tqdm(total=info.budget, desc=f"job {self.id}", unit="eval", disable=not progress) as bar:
            while True:
                bar.n = info.n_completed + info.n_failed
                bar.set_postfix(state=info.state, hv=f"{info.hypervolume or 0:.4g}")
                bar.refresh()
                if info.done:
                    return info
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still {info.state} after {timeout} s")
                time.sleep(poll)
                info = self.info()
