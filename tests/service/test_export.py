"""Exports: mergekit YAML that mergekit's own loader accepts and resolves to our values; checkpoints that
score as the job reported."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from mergekit.config import MergeConfiguration, evaluate_setting

from mergefront.cli import main as cli_main
from mergefront.evaluators.checkpoint import current_umask, load_checkpoint
from mergefront.evaluators.suites.digits import DigitsEvaluator, suite_dir
from mergefront.granularity import Granularity
from mergefront.methods import METHODS
from mergefront.optimizers import build_space
from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.mergekit import mergekit_config
from mergefront.service.runner import JobRunner
from mergefront.service.space import ModelFiles
from mergefront.spec import parse_spec

NAMES = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] + [
    f"model.layers.{i}.{p}" for i in range(12)
    for p in ("self_attn.q_proj.weight", "self_attn.o_proj.weight", "mlp.up_proj.weight", "input_layernorm.weight")]
FILES = ModelFiles(Path("/models/base"), (Path("/models/a"), Path("/models/b")), tuple(NAMES), "bfloat16")


def _spec(spec_data: dict, merge: dict, experts: int = 2) -> object:
    spec_data["models"]["experts"] = spec_data["models"]["experts"][:experts]
    spec_data["objectives"] = spec_data["objectives"][:1]
    return parse_spec({**spec_data, "merge": merge})


def test_mixed_granularity_yaml_resolves_to_our_values_in_mergekit(spec_data: dict) -> None:
    spec = _spec(spec_data, {"method": "ties", "weight": {"low": 0, "high": 1, "granularity": "component"},
                             "density": {"low": 0.2, "high": 1, "granularity": {"layers": 5}}, "lambda": 0.9})
    space = build_space(spec.merge, spec.models.experts, NAMES)
    rng = random.Random(0)
    params = {p.name: round(rng.uniform(p.low, p.high), 4) for p in space.parameters}
    config = MergeConfiguration.model_validate(yaml.safe_load(yaml.safe_dump(mergekit_config(spec, space, params,
                                                                                             FILES))))
    assert config.merge_method == "ties" and config.parameters["lambda"] == 0.9
    for expert, model in enumerate(config.models):
        for kind in ("weight", "density"):
            for name in NAMES:
                param = next(p for p in space.parameters if p.kind == kind and p.expert == expert
                             and p.group == p.granularity.group_of(name, NAMES))
                got = evaluate_setting(name, model.parameters[kind], validate=float)
                assert got == pytest.approx(params[param.name]), (kind, name, model.parameters[kind])


@pytest.mark.parametrize("method", sorted(m for m, info in METHODS.items() if info.params))
def test_every_method_exports_a_config_mergekit_accepts(spec_data: dict, method: str) -> None:
    info = METHODS[method]
    merge: dict = {"method": method}
    if "gamma" in info.params:
        merge["gamma"] = 0.05
    if "epsilon" in info.params:
        merge["epsilon"] = 0.1
    if "lambda" in info.params:
        merge["lambda"] = {"low": 0.5, "high": 1.5, "granularity": {"filters": ["mlp"]}}
    spec = _spec(spec_data, merge, experts=1 if info.max_experts == 1 else 2)
    space = build_space(spec.merge, spec.models.experts, NAMES)
    params = {p.name: (p.low + p.high) / 2 + 0.01 * i for i, p in enumerate(space.parameters)}
    files = ModelFiles(FILES.base, FILES.experts[: len(spec.models.experts)], FILES.merged_keys, FILES.dtype)
    config = MergeConfiguration.model_validate(mergekit_config(spec, space, params, files))
    assert config.merge_method == method
    assert {str(m.model.model.path) for m in config.models} >= {str(p) for p in files.experts}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_exported_checkpoint_scores_as_the_job_reported(api, settings, sessions, spec_data: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec_data["optimizer"].update(budget=4, batch_size=4)
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    assert JobRunner(session_factory=sessions, settings=settings).run(job_id) == "completed"
    with session_scope(sessions) as s:
        best = repo.best_on_front(session=s, job_id=job_id, objective="parity_accuracy")
        best_id, metrics = best.id, dict(best.metrics or {})
    with api(run_jobs=False) as client:
        text = client.get(f"/v1/evaluations/{best_id}/export/mergekit")
        assert text.status_code == 200 and MergeConfiguration.model_validate(yaml.safe_load(text.text))
        # models named as the spec names them, never by the server's cache paths
        assert "bench://digits/parity" in text.text and str(settings.resolved_cache_dir) not in text.text
        url = f"/v1/evaluations/{best_id}/export/checkpoint"
        response = client.post(url, json={"out_dir": "m"})
        assert response.status_code == 200 and response.json() == {"path": "m", "files": ["model.safetensors"]}
        again = client.post(url, json={"out_dir": "m"})
        assert again.status_code == 409
        assert again.json() == {"detail": "out_dir 'm' already holds files; send overwrite: true to replace them"}
        assert client.post(url, json={"out_dir": "m", "overwrite": True}).status_code == 200
        download = client.get(f"/v1/evaluations/{best_id}/export/checkpoint.zip")
        assert download.status_code == 200 and download.content[:2] == b"PK"
        assert client.get("/v1/evaluations/999999/export/mergekit").status_code == 404
    merged = load_checkpoint(settings.resolved_export_root / "m")
    evaluator = DigitsEvaluator(suite_dir(settings.resolved_cache_dir), ["rotated", "inverted", "parity"])
    scores = evaluator.evaluate(merged)
    assert {f"{t}_accuracy": v for t, v in scores.items()} == pytest.approx(metrics, abs=1e-12)
    url = settings.resolved_database_url
    assert cli_main(["export", "--job", str(job_id), "--best", "parity_accuracy", "--mergekit", "-", "--db", url]) == 0
    assert "merge_method: ties" in capsys.readouterr().out
    # exported files get the mode any new file gets here (0666 less the umask), not safetensors' private 0600
    usual = 0o666 & ~current_umask()
    yaml_file = tmp_path / "best.yaml"
    assert cli_main(["export", "--job", str(job_id), "--best", "parity_accuracy", "--mergekit", str(yaml_file),
                     "--db", url]) == 0
    for written in (settings.resolved_export_root / "m" / "model.safetensors", yaml_file):
        assert written.stat().st_mode & 0o777 == usual, (written.name, oct(written.stat().st_mode))


def test_granularity_labels_cover_every_tensor_once() -> None:
    for granularity in (Granularity(kind="component"), Granularity(kind="layers", groups=5),
                        Granularity(kind="filters", filters=("mlp", "self_attn"))):
        labels = granularity.labels(NAMES)
        assert {granularity.group_of(n, NAMES) for n in NAMES} == set(labels)
