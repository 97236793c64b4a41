"""What the REST API returns, shared by the service (responses) and the SDK (parsing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from mergefront.bounds import CleanModel
from mergefront.errors import public_message


def _utc(value: datetime) -> datetime:
    """The database stores naive UTC; the API says so (RFC 3339 with an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]

# an error as the API shows it: no stack trace, process id or server path (the server's log has the full text)
PublicError = Annotated[str | None, AfterValidator(lambda v: None if v is None else public_message(v))]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class JobOut(_Out):
    id: int
    name: str
    state: str
    optimizer: str
    budget: int
    objectives: list[str]
    maximize: list[bool]
    reference_point: list[float | None]
    external: bool = False  # evaluated outside mergefront: candidates are fetched and told through ask/tell
    n_completed: int = 0
    n_failed: int = 0
    hypervolume: float | None = None
    error: PublicError = None
    notes: str | None = None
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    spec: dict[str, Any]

    @property
    def done(self) -> bool:
        """Whether the job has ended (completed, failed or cancelled)."""
        return self.state in ("completed", "failed", "cancelled")


class JobUpdate(CleanModel):
    """A new name and/or notes for a job (PATCH /v1/jobs/{id}); a field left out is kept, notes null removes them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = Field(None, min_length=1, max_length=200)
    notes: str | None = Field(None, max_length=20000)


class AttemptError(BaseModel):
    """One failed attempt of an evaluation: which try, what went wrong, on which node, when."""

    attempt: int
    error: PublicError = None
    node: str | None = None
    at: Timestamp


class EvaluationOut(_Out):
    id: int
    job_id: int
    number: int
    state: str
    params: dict[str, float]
    metrics: dict[str, float] | None = None
    error: PublicError = None
    # every failed try, oldest first, kept after a retry succeeds
    errors: Annotated[list[AttemptError], BeforeValidator(lambda v: v or [])] = Field(default_factory=list)
    attempts: int
    worker: str | None = None  # the worker's host and device
    node: str | None = None  # the Ray node that ran it: its name (`ray start --node-name`), else its address
    node_id: str | None = None  # that node's Ray id
    merge_seconds: float | None = None
    eval_seconds: float | None = None
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    expires_at: Timestamp | None = None  # external jobs: an untold candidate expires then
    repeat_of: int | None = None  # optimizer.reevaluate: the id of the first evaluation of the same point


class FrontMember(EvaluationOut):
    """A point on the front: its first evaluation, whose `metrics` are the mean over every completed evaluation of
    the point (evaluated again with new mask seeds: `optimizer.reevaluate`), with their spread."""

    n_evaluations: int = 1
    evaluation_ids: list[int] = Field(default_factory=list)
    metrics_std: dict[str, float] | None = None  # standard deviation over the evaluations (0 for one)
    metrics_min: dict[str, float] | None = None
    metrics_max: dict[str, float] | None = None


class ParetoOut(BaseModel):
    """A job's front over points: a member evaluated more than once is there with its mean, and the
    hypervolume is that of the means."""

    job_id: int
    objectives: list[str]
    maximize: list[bool]
    reference_point: list[float | None]
    n_completed: int
    hypervolume: float
    members: list[FrontMember]


class Page(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[EvaluationOut]


class JobPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[JobOut]


class EvaluationRow(EvaluationOut):
    """An evaluation as the dashboard's table shows it: with whether it is on the latest front."""

    on_front: bool = False


class EvaluationTable(BaseModel):
    """One page of a job's evaluations, sorted and filtered on the server."""

    total: int
    offset: int
    limit: int
    sort: str
    descending: bool
    columns: list[str]
    items: list[EvaluationRow]


class FrontPoints(BaseModel):
    """Completed points as plot columns: every front member, dominated ones thinned to a bound (a point evaluated
    more than once is one column, with its mean).

    `values[k][i]` is objective `objectives[k]` of point `i`, `params[j][i]` its parameter `parameters[j]`;
    `ids`, `numbers`, `on_front` are per point.
    """

    job_id: int
    objectives: list[str]
    maximize: list[bool]
    n_completed: int
    n_front: int
    n_dominated: int
    n_dominated_shown: int
    ids: list[int]
    numbers: list[int]
    on_front: list[bool]
    values: list[list[float]]
    parameters: list[str] = Field(default_factory=list)
    params: list[list[float]] = Field(default_factory=list)
    # per point, its number of completed evaluations (more than one: optimizer.reevaluate; `values` are then the
    # means) and `spread[k][i]`, objective k's standard deviation over them
    counts: list[int] = Field(default_factory=list)
    spread: list[list[float]] = Field(default_factory=list)


class HypervolumePoint(BaseModel):
    n_completed: int
    hypervolume: float


class HypervolumeHistory(BaseModel):
    """Hypervolume against completed evaluations, at most `max_points` points (bucketed on the server)."""

    job_id: int
    reference_point: list[float | None]
    points: list[HypervolumePoint]


class ParameterOut(BaseModel):
    name: str
    low: float
    high: float
    kind: str
    expert: int | None
    group: str
    description: str


class PlacementOut(BaseModel):
    """What one placement takes per worker."""

    placement: str
    ranks: bool = Field(description="magnitude ranks kept (false: TIES/breadcrumbs/DELLA select thresholds per merge)")
    device_bytes: int
    host_bytes: int
    copied_per_merge: int = Field(description="bytes copied from host memory or disk to the device per merge")


class MemoryPlanOut(BaseModel):
    """Per worker: the placement chosen against the spec's limits (null: each worker's own memory decides)."""

    placement: str
    device_bytes: int
    host_bytes: int
    device_limit: int | None
    host_limit: int | None
    options: list[PlacementOut]
    description: str


class SpaceOut(BaseModel):
    """The searched parameters of a job: its dimension and what each coordinate means; and its memory plan."""

    job_id: int
    dim: int
    parameters: list[ParameterOut]
    notes: list[str] = Field(default_factory=list, description="groups left out of the space (no expert changes "
                             "them), what optimizer auto picked, initial designs cut to fit the budget, warnings")
    memory: MemoryPlanOut | None = None
    memory_note: str | None = Field(None, description="why there is no memory plan (yet)")


class SurrogateOut(BaseModel):
    objective: str
    r2: float | None = Field(description="leave-one-out R² (1: predicts held-out points exactly; <= 0: no better "
                             "than the mean); null when the values do not vary")


class SurrogatesOut(BaseModel):
    """How far a job's surrogates can be trusted, refitted from its completed evaluations."""

    job_id: int
    optimizer: str
    surrogate: str | None = Field(description="quadratic (map), gaussian process (qnehvi, saea), or null")
    n_points: int
    objectives: list[SurrogateOut]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="who or what uses it")
    scope: Literal["read", "write", "admin"] = Field("read", description="read: GET; write: also submit and "
                                                     "ask/tell; admin: also tokens and exports to the server's disk")
    expires_days: float | None = Field(None, gt=0, le=3650, description="days until it expires (none: never)")


class TokenOut(_Out):
    id: int
    name: str
    scope: str
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: Timestamp
    expires_at: Timestamp | None = None
    last_used_at: Timestamp | None = None
    revoked_at: Timestamp | None = None


class NewTokenOut(TokenOut):
    token: str = Field(description="the token itself: shown this once, stored only as a hash")


class EvaluatorOut(BaseModel):
    name: str = Field(description="what an objective's `evaluator` says")
    kind: Literal["builtin", "external", "plugin"]
    description: str
    metrics: list[str] = Field(default_factory=list)


class RankedOut(BaseModel):
    rank: int = Field(description="1 for the recommended member")
    score: float = Field(description="weighted mean of the member's objectives, each scaled to [0, 1] (1: best) "
                         "over the feasible members")
    evaluation: EvaluationOut


class RankingOut(BaseModel):
    """A job's front members that meet the constraints, ranked by the preference (weights per objective)."""

    job_id: int
    objectives: list[str]
    weights: list[float]
    constraints: list[str]
    n_front: int
    n_feasible: int
    tied: int = Field(description="how many members share the top score")
    rule: str = Field(description="how scores are made and ties broken")
    recommended: EvaluationOut | None
    items: list[RankedOut]


class CompareOut(BaseModel):
    """2 to 4 evaluations side by side: their rows, their mergekit YAMLs and each YAML's diff from the first's."""

    job_id: int
    items: list[EvaluationOut]
    mergekit: list[str | None] = Field(description="each one's mergekit YAML (null: not exportable, see notes)")
    diffs: list[str] = Field(description="unified diff of each YAML after the first against the first's")
    notes: list[str] = Field(default_factory=list)


class ParameterEffectOut(BaseModel):
    parameter: str
    effect: float = Field(description="range of the parameter's main-effect curve, in the objective's own units")
    share: float = Field(description="this effect over the sum of every parameter's effect on the objective")
    grid: list[float] = Field(description="the parameter's values along its range")
    curve: list[float] = Field(description="the surrogate's mean prediction at each value, the other parameters "
                               "averaged over the space")


class ObjectiveSensitivityOut(BaseModel):
    objective: str
    r2: float | None = Field(description="the surrogate's leave-one-out R² on this objective (<= 0: no better "
                             "than the mean; null when the values do not vary); read the effects beside it")
    parameters: list[ParameterEffectOut] = Field(description="largest effect first")


class PredictedFrontOut(BaseModel):
    values: list[list[float]] = Field(description="`values[k][i]`: objective k of predicted point i")
    params: list[dict[str, float]]


class SensitivityOut(BaseModel):
    """What a job's surrogates say about each parameter, and the front they predict (MAP only)."""

    job_id: int
    optimizer: str
    surrogate: str | None = Field(description="the surrogate's kind; null before enough evaluations completed")
    own: bool = Field(description="true when the optimizer itself uses this surrogate")
    n_points: int = Field(description="completed evaluations it was fitted on")
    note: str
    objectives: list[ObjectiveSensitivityOut]
    predicted_front: PredictedFrontOut | None = Field(description="the surrogate's predicted Pareto front, where the "
                                                      "optimizer has one (MAP)")
