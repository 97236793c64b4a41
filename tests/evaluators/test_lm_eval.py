"""The lm_eval evaluator: harness tasks of our own (YAML over a local JSONL file) on the resident tinylm model."""

from __future__ import annotations

import importlib
import json
import random
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.objectives.lm_eval import LMEvalObjective, metrics_of
from mergefront.evaluators.suites import ensure_suite
from mergefront.objectives import LMEvalSettings

CHOICE, GENERATE = "tinylm_reverse_choice", "tinylm_reverse_generate"
LIMIT = 12
N_CHOICES = 4  # reversed (right), as given, sorted, random digits: chance is 1 / 4
COMMON = """dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{prompt}}}}"
"""
TASKS = {
    CHOICE: """output_type: multiple_choice
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
    GENERATE: """output_type: generate_until
doc_to_target: answer
generation_kwargs:
  until: ["<eos>"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""",
}


def _reverse_records(n: int, seed: int = 0) -> list[dict]:
    """`[reverse]` prompts of 6 digits (the suite's evaluation length) with answer and multiple choices."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        digits = [str(rng.randrange(10)) for _ in range(6)]
        choices = [" ".join(reversed(digits)), " ".join(digits), " ".join(sorted(digits)),
                   " ".join(str(rng.randrange(10)) for _ in range(6))]
        records.append({"prompt": f"[reverse] {' '.join(digits)} =", "answer": choices[0], "choices": choices,
                        "label": 0})
    return records


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two harness tasks of our own over one local JSONL file."""
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    data = root / "reverse.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _reverse_records(32)))
    for name, body in TASKS.items():
        (root / f"{name}.yaml").write_text(f"task: {name}\n" + COMMON.format(data=data) + body)
    return root


@pytest.fixture(scope="module")
def suite_path(cache_dir: Path) -> Path:
    return ensure_suite("tinylm", cache_dir, verbose=False)


@pytest.fixture(scope="module")
def tokenizer(suite_path: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(suite_path / "base"))


@pytest.fixture(scope="module")
def objective(task_dir: Path, tokenizer: PreTrainedTokenizerBase) -> LMEvalObjective:
    settings = LMEvalSettings(tasks=[CHOICE, GENERATE], include_path=str(task_dir), limit=LIMIT, batch_size=8)
    return LMEvalObjective(settings, tokenizer=tokenizer, device=torch.device("cpu"))


def _load(suite_path: Path, name: str) -> PreTrainedModel:
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(str(suite_path / name), dtype=torch.float32)
    return model.eval()


def test_reports_task_slash_metric_and_the_expert_beats_chance(
    objective: LMEvalObjective, suite_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    metrics = objective(_load(suite_path, "reverse"), tokenizer)
    assert set(metrics) == {f"{CHOICE}/acc", f"{GENERATE}/exact_match"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics[f"{CHOICE}/acc"] >= 0.9  # chance: 1 / N_CHOICES
    assert metrics[f"{GENERATE}/exact_match"] >= 0.9
    assert len(objective.tasks[CHOICE].instances) == LIMIT * N_CHOICES  # the limit holds: one request per choice


def test_scores_weights_overwritten_in_place_as_a_fresh_model(
    objective: LMEvalObjective, suite_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    model = _load(suite_path, "copy")  # copies the digits: picks the wrong choice on reverse prompts
    before = objective(model, tokenizer)
    assert objective(model, tokenizer) == before
    reverse = _load(suite_path, "reverse")
    with torch.no_grad():
        for name, param in model.state_dict().items():
            param.copy_(reverse.state_dict()[name])
    after = objective(model, tokenizer)
    assert after[f"{CHOICE}/acc"] > before[f"{CHOICE}/acc"] + 0.5
    assert after[f"{GENERATE}/exact_match"] > before[f"{GENERATE}/exact_match"] + 0.5
    assert after == objective(_load(suite_path, "reverse"), tokenizer)


def test_unknown_task_is_an_invalid_spec_naming_close_matches(
    task_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    settings = LMEvalSettings(tasks=[CHOICE + "s"], include_path=str(task_dir))
    with pytest.raises(InvalidSpecError, match=f"no task '{CHOICE}s'.*did you mean.*'{CHOICE}'") as caught:
        LMEvalObjective(settings, tokenizer=tokenizer, device=torch.device("cpu"))
    assert caught.value.loc == ("settings", "tasks")


def test_num_fewshot_overrides_the_task_config(task_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    for num_fewshot, expected in ((None, 0), (2, 2)):
        settings = LMEvalSettings(tasks=[CHOICE], include_path=str(task_dir), num_fewshot=num_fewshot)
        objective = LMEvalObjective(settings, tokenizer=tokenizer, device=torch.device("cpu"))
        assert objective.tasks[CHOICE].get_config("num_fewshot") == expected


def test_metric_names_drop_the_default_filter_stderr_and_non_numbers() -> None:
    results = {
        "results": {"gsm8k": {"alias": "gsm8k", "sample_len": 8, "exact_match,strict-match": 0.5,
                              "exact_match_stderr,strict-match": 0.1, "exact_match,none": 0.25}},
        "groups": {"mmlu": {"alias": "mmlu", "acc,none": 0.75, "acc_stderr,none": "N/A"}},
        "n-samples": {"gsm8k": {"original": 8, "effective": 8}},
    }
    assert metrics_of(results) == {"gsm8k/exact_match,strict-match": 0.5, "gsm8k/exact_match": 0.25,
                                   "mmlu/acc": 0.75}


def test_without_the_harness_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval.evaluator", None)  # None in sys.modules: the import fails
    monkeypatch.delitem(sys.modules, "mergefront.evaluators.objectives.lm_eval")
    with pytest.raises(ImportError, match=r"pip install 'mergefront\[lmeval\]'"):
        importlib.import_module("mergefront.evaluators.objectives.lm_eval")
