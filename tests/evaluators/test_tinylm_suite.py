"""bench://tinylm: real Hugging Face checkpoints, deterministic, experts that conflict, honest evaluators.

The suite is built once per test session (the `cache_dir` fixture), as jobs build it; the end-to-end tests share it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.suites import open_suite
from mergefront.evaluators.suites import tinylm as tinylm_module
from mergefront.evaluators.suites.tinylm import MANIFEST, TASKS, TinyLMSuite, Training, build, ensure_built, suite_dir
from mergefront.evaluators.suites.tinylm_data import held_out, load_held_out
from mergefront.evaluators.suites.tinylm_tasks import IGNORE, PAD, VOCAB, to_text
from mergefront.suites import BUILTIN_SUITES, SUITE_METRICS
from tests.quoted import quoted_for_this_cpu

TINY = Training(base_steps=3, expert_steps=3, batch_size=8)
MARGIN = 0.02


@pytest.fixture(scope="module")
def suite_path(cache_dir: Path) -> Path:
    """The suite as jobs build it, shared with the end-to-end tests through the session's cache."""
    return ensure_built(cache_dir, seed=0, verbose=False)


@pytest.fixture(scope="module")
def suite(suite_path: Path) -> TinyLMSuite:
    opened = open_suite("tinylm", suite_path)
    assert isinstance(opened, TinyLMSuite)
    return opened


def _validation(suite_path: Path) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = json.loads((suite_path / MANIFEST).read_text())["validation"]
    return table


def _assert_scores_equal(got: dict[str, dict[str, float]], want: dict[str, dict[str, float]]) -> None:
    assert set(got) == set(want)
    for task, metrics in want.items():
        assert got[task] == pytest.approx(metrics, abs=1e-6), task


def test_models_are_hugging_face_directories_that_load_offline(
    suite: TinyLMSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompt = load_held_out(suite.path / "data.safetensors", ["add"], "validation")["add"].prompt[0]
    for name in ("base", *TASKS):
        directory = suite.model_path(name)
        model = AutoModelForCausalLM.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        assert model.config.model_type == "llama"
        state = suite.load_model(name)
        assert set(state) == set(model.state_dict()) == set(suite.merged_keys(state))
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        text = to_text(prompt[1:])  # what a user types; the tokenizer adds <bos>
        assert tokenizer(text)["input_ids"] == prompt.tolist()
        assert tokenizer.convert_ids_to_tokens(list(range(len(VOCAB)))) == list(VOCAB)
        assert tokenizer.pad_token_id == PAD


def test_same_seed_gives_identical_files_and_a_verbose_build_shows_its_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(tmp_path / "a", 0, verbose=True, training=TINY)
    out = capsys.readouterr()
    steps = TINY.base_steps + len(TASKS) * TINY.expert_steps
    err = out.err.replace("\r", "\n").splitlines()
    assert err[0] == "building bench://tinylm (once: later jobs read it from the cache)"
    assert any(line.startswith("bench://tinylm training: 100%") and f"{steps}/{steps}" in line for line in err)
    assert err[-1] == "scoring the base, the experts and two merges on the held-out sets"
    assert "built in" in out.out and "merge 1/N" in out.out  # the table, on stdout
    build(tmp_path / "b", 0, verbose=False, training=TINY)  # quiet, and the same bytes as the build that showed
    assert capsys.readouterr() == ("", "")
    for path in ("base/model.safetensors", "copy/model.safetensors", "add/model.safetensors", "data.safetensors"):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path


def test_held_out_sets_depend_on_seed_and_split_only() -> None:
    assert torch.equal(held_out(0, "sort", "test").prompt, held_out(0, "sort", "test").prompt)
    assert not torch.equal(held_out(0, "sort", "test").prompt, held_out(1, "sort", "test").prompt)
    assert not torch.equal(held_out(0, "sort", "test").prompt, held_out(0, "sort", "validation").prompt)


def test_experts_beat_the_base_on_their_own_task(suite_path: Path) -> None:
    table = _validation(suite_path)
    for task in TASKS:
        expert, base = table["expert"][task], table["base"][task]
        assert expert["accuracy"] > base["accuracy"] + MARGIN, (task, expert, base)
        assert expert["loss"] < base["loss"], (task, expert, base)


def test_equal_weight_merge_loses_against_an_expert(suite: TinyLMSuite) -> None:
    base = suite.load_model("base")
    merger = ResidentMerger(base, [suite.load_model(t) for t in TASKS], suite.merged_keys(base))
    merged = merger.merge(MergeConfig("task_arithmetic", (1.0 / len(TASKS),) * len(TASKS)))
    scores = suite.evaluator(TASKS, "validation", torch.device("cpu")).evaluate(merged)
    experts = _validation(suite.path)["expert"]
    lost = [t for t in TASKS if scores[t]["accuracy"] < experts[t]["accuracy"] - MARGIN]
    assert lost, (scores, experts)
    _assert_scores_equal(scores, _validation(suite.path)["merge_equal"])


def test_evaluator_metrics_agree_with_the_manifest(suite: TinyLMSuite) -> None:
    table = _validation(suite.path)
    evaluator = suite.evaluator(TASKS, "validation", torch.device("cpu"))
    _assert_scores_equal(evaluator.evaluate(suite.load_model("base")), table["base"])
    for task in TASKS:
        assert evaluator.evaluate(suite.load_model(task))[task] == pytest.approx(table["expert"][task], abs=1e-6)
    for metrics in table["base"].values():
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert 0.0 < metrics["loss"] < SUITE_METRICS["tinylm"]["loss"]


@pytest.mark.parametrize("task", ["reverse", "add"])
def test_evaluator_scores_an_expert_as_transformers_does(suite: TinyLMSuite, task: str) -> None:
    examples = load_held_out(suite.path / "data.safetensors", [task], "test")[task]
    model = AutoModelForCausalLM.from_pretrained(suite.model_path(task)).eval()
    n_answer = examples.answer.shape[1]
    with torch.no_grad():
        generated = model.generate(
            examples.prompt, attention_mask=torch.ones_like(examples.prompt), max_new_tokens=n_answer, do_sample=False
        )[:, examples.prompt.shape[1] :]
        generated = F.pad(generated, (0, n_answer - generated.shape[1]), value=PAD)  # all stopped early
        full = torch.cat([examples.prompt, examples.answer], dim=1)
        labels = torch.cat([torch.full_like(examples.prompt, IGNORE), examples.answer], dim=1)
        loss = model(input_ids=full, labels=labels).loss.item()
    accuracy = (generated == examples.answer).all(dim=1).double().mean().item()
    scores = suite.evaluator([task], "test", torch.device("cpu")).evaluate(suite.load_model(task))
    assert scores[task]["accuracy"] == accuracy
    assert scores[task]["loss"] == pytest.approx(loss, rel=1e-5)
    assert 0.0 < accuracy  # a test that can fail: the expert solves some of its task


def test_a_loss_only_evaluator_decodes_nothing_and_scores_the_same_loss(suite: TinyLMSuite) -> None:
    state = suite.load_model("copy")
    full = suite.evaluator(["copy", "add"], "validation", torch.device("cpu")).evaluate(state)
    losses = suite.evaluator(["copy", "add"], "validation", torch.device("cpu"), ["loss"]).evaluate(state)
    assert losses == {task: {"loss": full[task]["loss"]} for task in ("copy", "add")}
    with pytest.raises(ValueError, match="not \\['perplexity'\\]"):
        suite.evaluator(["copy"], "validation", torch.device("cpu"), ["perplexity"])


def test_evaluator_refuses_tensors_it_lacks(suite: TinyLMSuite) -> None:
    state = suite.load_model("base")
    del state["lm_head.weight"]
    with pytest.raises(ValueError, match="lm_head.weight"):
        suite.evaluator(["copy"], "validation", torch.device("cpu")).evaluate(state)


def test_ensure_built_builds_once_into_place(
    suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_build(out_dir: Path, seed: int = 0, *, verbose: bool = True) -> None:
        calls.append(seed)
        shutil.copytree(suite_path, out_dir, dirs_exist_ok=True)

    monkeypatch.setattr(tinylm_module, "build", fake_build)
    first = ensure_built(tmp_path, 3, verbose=False)
    assert ensure_built(tmp_path, 3, verbose=False) == first == suite_dir(tmp_path, 3)
    assert calls == [3]
    assert (first / MANIFEST).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [first.name]  # no scratch left


def test_the_build_table_in_the_docs_is_a_fresh_builds(suite_path: Path) -> None:
    """docs/suites.md quotes the validation table a build prints (seed 0); the session's cache is built fresh, and
    its manifest keeps that build's figures, printed by the same `format_table`."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "suites.md").read_text()
    block = quoted_for_this_cpu(page, r"task +base +expert +merge 1/N +merge sum +\| .*?\ncopy ",
                                "docs/suites.md's tinylm build table")
    quoted = [line.rstrip() for line in block.splitlines()]
    assert quoted == [line.rstrip() for line in tinylm_module.format_table(_validation(suite_path)).splitlines()]


def test_builtin_suite_names_agree_with_the_suite() -> None:
    assert BUILTIN_SUITES["tinylm"] == TASKS
    assert set(SUITE_METRICS["tinylm"]) == set(tinylm_module.METRICS)
    assert SUITE_METRICS["tinylm"]["loss"] >= math.log(len(VOCAB))
