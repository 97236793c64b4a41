"""One candidate per merge method, written both as our `MergeConfig` and as the same mergekit YAML.

Both sides keep `int(density * n)` entries (TIES at least one), so any density would do; the differential test
(tests/evaluators/test_mergekit_differential.py) covers arbitrary ones. `normalize` is written out on both sides
(mergekit's default), so a difference in defaults cannot make the two merge different things. DELLA's `epsilon`
means the same on both sides: keep probabilities from density - epsilon to density + epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mergefront.evaluators.merge import MergeConfig

WEIGHTS = (0.5, 0.25, 0.75, 1.0)
DENSITIES = (0.5, 0.25, 0.75, 0.5)
LAMBDA = 0.75
GAMMA = 1 / 64
EPSILON = 0.1
SLERP_T = 0.3
DTYPE = "float32"


@dataclass(frozen=True)
class Candidate:
    method: str
    n_experts: int  # experts merged (slerp: 1, the base being the other end)
    normalize: bool | None  # None: the method has no normalize switch
    deterministic: bool
    bytes_formula: str  # bytes a merge must move at least, n = merged numbers, k = experts

    def bytes_moved(self, n: int) -> int:
        k = self.n_experts
        reads = {"della": 2 * k + 1, "della_linear": 2 * k + 1}.get(self.method, k + 1)
        return (reads + 1) * n * 4

    def ours(self, seed: int = 0) -> MergeConfig:
        k = self.n_experts
        params: dict[str, float] = {}
        if self.method in ("slerp",):
            params["t"] = SLERP_T
        if self.method.startswith("breadcrumbs"):
            params["gamma"] = GAMMA
        if self.method.startswith("della"):
            params["epsilon"] = EPSILON
        uses_weight = self.method not in ("slerp", "model_stock")
        uses_density = self.method not in ("slerp", "model_stock", "linear", "task_arithmetic")
        uses_lambda = uses_weight and self.method != "linear"
        return MergeConfig(self.method, weights=WEIGHTS[:k] if uses_weight else None,
                           densities=DENSITIES[:k] if uses_density else None,
                           scale=LAMBDA if uses_lambda else None, params=params,
                           normalize=self.normalize, seed=seed)

    def mergekit_yaml(self, folder: Path) -> dict[str, object]:
        """The same merge as a mergekit configuration over the checkpoints in `folder`."""
        base = str(folder / "base")
        experts = [str(folder / f"expert{i}") for i in range(self.n_experts)]
        if self.method == "slerp":
            return {"merge_method": "slerp", "base_model": base, "dtype": DTYPE, "parameters": {"t": SLERP_T},
                    "models": [{"model": base}, {"model": experts[0]}]}
        if self.method == "model_stock":
            return {"merge_method": "model_stock", "base_model": base, "dtype": DTYPE,
                    "models": [{"model": base}, *({"model": e} for e in experts)]}
        models = [{"model": e, "parameters": self._expert_params(i)} for i, e in enumerate(experts)]
        config: dict[str, object] = {"merge_method": self.method, "dtype": DTYPE, "models": models,
                                     "parameters": {"normalize": self.normalize}}
        if self.method != "linear":
            config["base_model"] = base
            config["parameters"] = {"normalize": self.normalize, "lambda": LAMBDA}
        return config

    def _expert_params(self, i: int) -> dict[str, float]:
        params = {"weight": WEIGHTS[i]}
        if self.method not in ("linear", "task_arithmetic"):
            params["density"] = DENSITIES[i]
        if self.method.startswith("breadcrumbs"):
            params["gamma"] = GAMMA
        if self.method.startswith("della"):
            params["epsilon"] = EPSILON
        return params


_WRITE = "read base + k task vectors, write the output: (k+2) x n x 4"
CANDIDATES: dict[str, Candidate] = {c.method: c for c in (
    Candidate("task_arithmetic", 4, False, True, _WRITE),
    Candidate("linear", 4, True, True, _WRITE),
    Candidate("ties", 4, True, True, _WRITE + " (k int32 magnitude ranks read besides)"),
    Candidate("breadcrumbs", 4, False, True, _WRITE + " (k int32 magnitude ranks read besides)"),
    Candidate("breadcrumbs_ties", 4, False, True, _WRITE + " (k int32 magnitude ranks read besides)"),
    Candidate("dare_linear", 4, False, False, _WRITE + " (random masks drawn, not read)"),
    Candidate("dare_ties", 4, False, False, _WRITE + " (random masks drawn, not read)"),
    Candidate("della", 4, True, False, "read base + k task vectors + k int32 ranks, write: (2k+2) x n x 4"),
    Candidate("della_linear", 4, False, False, "read base + k task vectors + k int32 ranks, write: (2k+2) x n x 4"),
    Candidate("slerp", 1, None, True, "read base + 1 task vector, write the output: 3 x n x 4"),
    Candidate("model_stock", 4, None, True, _WRITE),
)}
