"""The Python SDK: submit a spec, follow its job, read its evaluations and front; drive an external job."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from mergefront.errors import (
    AuthenticationError,
    ConflictError,
    InvalidSpecError,
    MergefrontError,
    NotFoundError,
    PermissionDeniedError,
)
from mergefront.schemas import (
    EvaluationOut,
    EvaluatorOut,
    JobOut,
    JobPage,
    NewTokenOut,
    Page,
    ParetoOut,
    SpaceOut,
    SurrogatesOut,
    TokenOut,
)
from mergefront.spec import JobSpec

DEFAULT_URL = "http://127.0.0.1:8000"
#: how many times an idempotent request is tried again after a 503
RETRIES = 5


class Client:
    """A client of one mergefront server; `token` (default: MERGEFRONT_TOKEN) is sent with every request."""

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 30.0,
                 http: httpx.Client | None = None):
        self.url = url.rstrip("/")
        token = token or os.environ.get("MERGEFRONT_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        if http is not None and token:
            self._http.headers["Authorization"] = f"Bearer {token}"

    def submit(self, spec: JobSpec | Mapping[str, Any] | str | Path) -> Job:
        """Queue a job from a spec object, a mapping, or a YAML/JSON file path."""
        if isinstance(spec, JobSpec):
            body: Any = spec.model_dump(mode="json")
        elif isinstance(spec, str | Path):
            body = yaml.safe_load(Path(spec).read_text())
        else:
            body = dict(spec)
        return Job(self, JobOut.model_validate(self._request("POST", "/v1/jobs", json=body)).id)

    def job(self, job_id: int) -> Job:
        return Job(self, job_id)

    def jobs(self, offset: int = 0, limit: int = 50) -> list[JobOut]:
        page = JobPage.model_validate(self._request("GET", "/v1/jobs", params={"offset": offset, "limit": limit}))
        return page.items

    def evaluators(self) -> list[EvaluatorOut]:
        """The evaluators a job may name on this server: built-ins, external and registered plug-ins."""
        return [EvaluatorOut.model_validate(e) for e in self._request("GET", "/v1/evaluators")]

    def create_token(self, name: str, scope: str = "read", expires_days: float | None = None) -> NewTokenOut:
        """Make a token (needs an admin token); its `token` is shown this once."""
        body = {"name": name, "scope": scope, "expires_days": expires_days}
        return NewTokenOut.model_validate(self._request("POST", "/v1/tokens", json=body))

    def tokens(self) -> list[TokenOut]:
        return [TokenOut.model_validate(t) for t in self._request("GET", "/v1/tokens")]

    def revoke_token(self, token_id: int) -> TokenOut:
        return TokenOut.model_validate(self._request("DELETE", f"/v1/tokens/{token_id}"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> Any:
        """One request; an idempotent one (GET, tell) is tried again while the server answers 503 (its database
        was unavailable: nothing was acknowledged), waiting as its Retry-After says, up to RETRIES times."""
        again = RETRIES if (method == "GET" if idempotent is None else idempotent) else 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise MergefrontError(f"cannot reach mergefront at {self.url}: {exc}") from exc
            if response.status_code < 400:
                return response.json()
            if response.status_code != 503 or again <= 0:
                raise _error(response)
            again -= 1
            time.sleep(min(float(response.headers.get("retry-after", "1") or 1), 30.0))


def _error(response: httpx.Response) -> MergefrontError:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if response.status_code == 422 and isinstance(detail, list) and detail:
        first = detail[0]
        loc = [p for p in first.get("loc", []) if p != "body"]
        return InvalidSpecError(str(first.get("msg")), loc)
    cls = {401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
           409: ConflictError}.get(response.status_code, MergefrontError)
    return cls(f"HTTP {response.status_code}: {detail}")


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


class Job:
    """A handle on one job of a server."""

    def __init__(self, client: Client, job_id: int) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job(id={self.id}, url={self.client.url!r})"

    def info(self) -> JobOut:
        return JobOut.model_validate(self.client._request("GET", f"/v1/jobs/{self.id}"))

    def space(self) -> SpaceOut:
        """The job's search space (its dimension and the meaning of each coordinate)."""
        return SpaceOut.model_validate(self.client._request("GET", f"/v1/jobs/{self.id}/space"))

    def space_description(self) -> str:
        from mergefront.report import format_space

        space = self.space()
        text = format_space([(p.name, p.low, p.high, p.description) for p in space.parameters])
        return "\n".join([text, *(f"  {line}" for line in space.notes)])

    def surrogates(self) -> SurrogatesOut:
        """The job's surrogates refitted on its completed evaluations, with each one's leave-one-out R²."""
        return SurrogatesOut.model_validate(self.client._request("GET", f"/v1/jobs/{self.id}/surrogates"))

    def pareto(self) -> ParetoOut:
        return ParetoOut.model_validate(self.client._request("GET", f"/v1/jobs/{self.id}/pareto"))

    def evaluations(self, state: str | None = None, page_size: int = 500) -> list[EvaluationOut]:
        """Every evaluation of the job (fetched page by page)."""
        items: list[EvaluationOut] = []
        while True:
            params: dict[str, Any] = {"offset": len(items), "limit": page_size}
            if state:
                params["state"] = state
            page = Page.model_validate(self.client._request("GET", f"/v1/jobs/{self.id}/evaluations", params=params))
            items += page.items
            if len(items) >= page.total or not page.items:
                return items

    def ask(self, n: int = 1) -> list[EvaluationOut]:
        """Fetch up to `n` candidates of an external job to evaluate (none once its budget is spent).

        Each has an `id`, a `number` and its merge `params`; tell its result before its `expires_at` (UTC).
        """
        rows = self.client._request("POST", f"/v1/jobs/{self.id}/ask", json={"n": n})
        return [EvaluationOut.model_validate(r) for r in rows]

    def tell(self, candidate: EvaluationOut | int, metrics: Mapping[str, float] | None = None, *,
             error: str | None = None) -> EvaluationOut:
        """Report a candidate's metrics (a value per objective), or the `error` that kept it from being evaluated.

        Telling the same result twice is harmless; a different one, or a tell after the candidate expired, raises
        ConflictError; a missing, unknown or non-finite metric raises InvalidSpecError naming it.
        """
        evaluation_id = candidate if isinstance(candidate, int) else candidate.id
        body = {"metrics": None if metrics is None else _numbers(metrics), "error": error}
        raw = self.client._request("POST", f"/v1/evaluations/{evaluation_id}/tell", json=body, idempotent=True)
        return EvaluationOut.model_validate(raw)

    def wait(self, *, progress: bool = True, poll: float = 1.0, timeout: float | None = None) -> JobOut:
        """Block until the job completes or fails, showing a progress bar; return its final state."""
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
