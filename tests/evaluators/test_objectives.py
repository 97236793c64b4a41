"""The built-in evaluators and the merged model they score, on the test suite's own tiny Llama."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, ObjectiveSetup, WorkerSetup
from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.objectives import FunctionObjective, make_objective, pick_metric
from mergefront.evaluators.objectives.cost import SparsityObjective, StorageObjective
from mergefront.evaluators.objectives.model import bind, load_model
from mergefront.objectives import BUILTIN, CausalLMSettings, ClassificationSettings, CostSettings, GenerationSettings

CPU = torch.device("cpu")


def test_every_builtin_evaluator_has_a_worker_side() -> None:
    from mergefront.evaluators.objectives import REGISTRY

    assert set(REGISTRY) == set(BUILTIN)


def test_causal_lm_loss_is_the_token_weighted_cross_entropy_of_the_answers(own_models: dict[str, Path]) -> None:
    model, tokenizer = load_model(own_models["copy-expert"], CPU)
    settings = CausalLMSettings(data=str(own_models["reverse"]), text_column="answer", prompt_column="prompt",
                                limit=10, batch_size=3)
    objective = make_objective("causal_lm", settings.model_dump(), tokenizer=tokenizer, device=CPU)
    total, count = 0.0, 0
    rows = [json.loads(line) for line in own_models["reverse"].read_text().splitlines()[:10]]
    for row in rows:  # one example at a time, no padding
        prompt = tokenizer(row["prompt"])["input_ids"]
        answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1]
        total += float(F.cross_entropy(logits, torch.tensor(answer), reduction="sum"))
        count += len(answer)
    with torch.inference_mode():
        got = objective(model, tokenizer)
    assert got["loss"] == pytest.approx(total / count, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert got["loss"] > 1.0  # the copy expert cannot reverse


def test_generation_exact_match_tells_the_experts_apart(own_models: dict[str, Path]) -> None:
    settings = GenerationSettings(data=str(own_models["copy"]), limit=20, batch_size=7, max_new_tokens=8)
    scores = {}
    for name in ("copy-expert", "reverse-expert"):
        model, tokenizer = load_model(own_models[name], CPU)
        objective = make_objective("generation", settings.model_dump(), tokenizer=tokenizer, device=CPU)
        with torch.inference_mode():
            scores[name] = objective(model, tokenizer)["exact_match"]
    assert scores == {"copy-expert": 1.0, "reverse-expert": 0.0}


def test_classification_accuracy_matches_the_arg_max_of_the_logits(tmp_path: Path, own_models: dict[str, Path]
                                                                   ) -> None:
    tokenizer = AutoTokenizer.from_pretrained(own_models["base"])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=3,
                         pad_token_id=tokenizer.pad_token_id, id2label={0: "low", 1: "mid", 2: "high"},
                         label2id={"low": 0, "mid": 1, "high": 2})
    model = LlamaForSequenceClassification(config).eval()
    texts = ["[copy] 1 2 3 =", "[sort] 9 9 =", "[add] 1 + 2 =", "[reverse] 4 5 6 7 =", "[copy] 0 ="]
    with torch.no_grad():
        predicted = [int(model(**tokenizer(t, return_tensors="pt")).logits.argmax(-1)) for t in texts]
    names = ["low", "mid", "high"]
    labels = [names[p] if i % 2 == 0 else names[(p + 1) % 3] for i, p in enumerate(predicted)]  # 3 of 5 right
    data = tmp_path / "labels.csv"
    data.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in zip(texts, labels, strict=True)))
    settings = ClassificationSettings(data=str(data), batch_size=2)
    objective = make_objective("classification", settings.model_dump(), tokenizer=tokenizer, device=CPU)
    with torch.inference_mode():
        assert objective(model, tokenizer) == {"accuracy": pytest.approx(3 / 5)}


def _merger() -> ResidentMerger:
    base = {"a": torch.zeros(4, 5), "b": torch.zeros(10)}
    expert = {"a": torch.ones(4, 5), "b": torch.arange(1.0, 11.0)}
    return ResidentMerger(base, [expert], ["a", "b"])


def test_sparsity_and_storage_count_the_entries_the_merge_changes() -> None:
    merger = _merger()
    merger.merge(MergeConfig("ties", params={"weight": 1.0, "density": 0.5}))  # keeps the top half of 30 entries
    changed = int((merger.out != merger.base).sum())
    assert changed == 15
    sparsity = SparsityObjective(CostSettings())(merger)
    assert sparsity == {"sparsity": pytest.approx(0.5), "kept_fraction": pytest.approx(0.5)}
    # "a": 20 entries, all 1.0: TIES keeps 10 (ties broken by position); "b": the 5 largest of 1..10
    storage = StorageObjective(CostSettings())(merger)
    stored = min(10 * 8, 20 * 4) + min(5 * 8, 10 * 4)  # sparse (value + int32 index) or dense, whichever is less
    assert storage == {"megabytes": pytest.approx(stored / 1e6), "fraction": pytest.approx(stored / (30 * 4))}
    merger.merge(MergeConfig("task_arithmetic", params={"weight": 0.0}))
    assert SparsityObjective(CostSettings())(merger)["sparsity"] == 1.0
    assert StorageObjective(CostSettings())(merger)["megabytes"] == 0.0


def test_bound_model_follows_every_merge_without_copies(own_models: dict[str, Path]) -> None:
    from mergefront.evaluators.checkpoint import load_checkpoint, merged_tensor_names

    keys = merged_tensor_names(own_models["base"])
    merger = ResidentMerger(load_checkpoint(own_models["base"]),
                            [load_checkpoint(own_models["copy-expert"]), load_checkpoint(own_models["reverse-expert"])],
                            keys)
    model, _ = load_model(own_models["base"], CPU)
    binding = bind(model, merger.tensors())
    assert binding.copies == []
    weight = dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    lo, hi = merger.out.data_ptr(), merger.out.data_ptr() + merger.out.numel() * merger.out.element_size()
    assert lo <= weight.data_ptr() < hi  # the parameter is a view of the merge's output buffer
    merger.merge(MergeConfig("linear", params={"weight": (1.0, 0.0)}))
    expert = load_checkpoint(own_models["copy-expert"])
    assert torch.allclose(weight, expert["model.layers.0.mlp.up_proj.weight"], atol=1e-6)  # base + (expert - base)


def _user_score(model: torch.nn.Module, tokenizer: object, settings: dict) -> dict[str, float]:
    return {"norm": float(sum(p.detach().norm() for p in model.parameters())) * settings["scale"], "other": 1.0}


class _ScaleSettings(BaseModel):
    scale: float = 3.0


_user_score.settings_model = _ScaleSettings  # type: ignore[attr-defined]


def test_function_objectives_and_metric_picking() -> None:
    objective = FunctionObjective(f"{__name__}:_user_score", {"scale": 2.0})
    assert isinstance(objective.function, type(_user_score))
    model = torch.nn.Linear(2, 2)
    reported = objective(model, None)
    assert pick_metric(reported, "norm", "x") == reported["norm"]
    with pytest.raises(ValueError, match="reported \\['norm', 'other'\\]"):
        pick_metric(reported, "", "objective 'x'")
    assert pick_metric({"": 3.0}, "", "x") == 3.0
    assert FunctionObjective(f"{__name__}:_user_score", {}).settings == {"scale": 3.0}  # its model's defaults
    with pytest.raises(ValueError, match="nan"):
        pick_metric({"score": float("nan")}, "score", "x")


def test_candidate_evaluator_runs_every_kind_of_objective(own_models: dict[str, Path], tmp_path: Path) -> None:
    module = tmp_path / "my_objectives_for_worker.py"
    module.write_text("def norm(model, tokenizer, settings):\n"
                      "    return float(model.lm_head.weight.norm()) * settings['scale']\n")
    import sys

    from mergefront.evaluators.checkpoint import merged_tensor_names

    copy_data = {"data": str(own_models["copy"]), "text_column": "answer", "prompt_column": "prompt", "limit": 16}
    objectives = (
        ObjectiveSetup("copy_loss", metric="loss", evaluator="causal_lm", settings=copy_data),
        ObjectiveSetup("copy_ppl", metric="perplexity", evaluator="causal_lm", settings=dict(copy_data)),
        ObjectiveSetup("reverse_em", metric="exact_match", evaluator="generation",
                       settings={"data": str(own_models["reverse"]), "limit": 16, "max_new_tokens": 8}),
        ObjectiveSetup("sparsity", metric="sparsity", evaluator="sparsity"),
        ObjectiveSetup("norm", metric="", evaluator="my_objectives_for_worker:norm", settings={"scale": 1.0}),
    )
    setup = WorkerSetup(str(own_models["base"]), (str(own_models["copy-expert"]), str(own_models["reverse-expert"])),
                        tuple(merged_tensor_names(own_models["base"])), objectives, device="cpu",
                        python_path=(str(tmp_path),))
    try:
        evaluator = CandidateEvaluator(setup)
        as_copy = evaluator.evaluate(Candidate(1, MergeConfig("linear", params={"weight": (1.0, 0.0)}))).metrics
        as_reverse = evaluator.evaluate(Candidate(2, MergeConfig("linear", params={"weight": (0.0, 1.0)}))).metrics
        ties = evaluator.evaluate(Candidate(3, MergeConfig("ties", params={"weight": 1.0, "density": 0.2}))).metrics
    finally:
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
    assert as_copy["copy_loss"] < 0.01 < 1.0 < as_reverse["copy_loss"]
    assert as_copy["reverse_em"] == 0.0 and as_reverse["reverse_em"] == 1.0
    assert as_copy["sparsity"] < 0.01 and 0.5 < ties["sparsity"] < 0.9  # a few entries no expert changed
    assert as_copy["norm"] != as_reverse["norm"]
    assert len(evaluator.objectives) == 4  # loss and perplexity of one data file share one evaluator and one run
    assert as_reverse["copy_ppl"] == pytest.approx(math.exp(as_reverse["copy_loss"]))
