"""What an objective's `evaluator` may name on this server: built-ins, external, and registered plug-ins."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mergefront.objectives import BUILTIN, EXTERNAL
from mergefront.plugins import Registry
from mergefront.schemas import EvaluatorOut

router = APIRouter(prefix="/v1/evaluators", tags=["evaluators"])


def evaluator_list(registry: Registry) -> list[EvaluatorOut]:
    """Built-in evaluators, external, and every plug-in registered here (`module` alone: its public functions)."""
    out = [EvaluatorOut(name=info.name, kind="builtin", description=info.description, metrics=list(info.metrics))
           for info in BUILTIN.values()]
    out.append(EvaluatorOut(name=EXTERNAL, kind="external", description="you evaluate candidates through ask/tell"))
    out += [EvaluatorOut(name=p.target if p.function else f"{p.target}:*", kind="plugin",
                         description=f"registered by {p.source}") for p in registry.plugins]
    return out


@router.get("")
def list_evaluators(request: Request) -> list[EvaluatorOut]:
    """The evaluators a job submitted here may name."""
    return evaluator_list(request.app.state.registry)
