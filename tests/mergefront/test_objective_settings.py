"""Objective settings are checked where the spec is validated: data files of every format, columns, limits."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mergefront.errors import InvalidSpecError
from mergefront.objectives import check_settings, read_columns, read_records

RECORDS = [{"prompt": f"p{i}", "answer": f"a{i}"} for i in range(5)]


def _write(folder: Path, suffix: str) -> Path:
    path = folder / f"data{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(RECORDS))
    elif suffix == ".csv":
        path.write_text("prompt,answer\n" + "".join(f"{r['prompt']},{r['answer']}\n" for r in RECORDS))
    else:
        pq.write_table(pa.Table.from_pylist(RECORDS), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_data_format_reads_the_same_records(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, suffix)
    assert read_columns(path) == {"prompt", "answer"}
    assert read_records(path) == RECORDS
    assert read_records(path, limit=2) == RECORDS[:2]
    settings = check_settings("generation", {"data": str(path), "limit": 3}, ("objectives", 0))
    assert settings["limit"] == 3 and settings["max_new_tokens"] == 32  # defaults filled in


@pytest.mark.parametrize(("evaluator", "settings", "loc"), [
    ("generation", {"data": "DATA", "answer_column": "label"}, ("settings", "answer_column")),
    ("generation", {"data": "DATA", "batch_size": 0}, ("settings", "batch_size")),
    ("generation", {"data": "data.txt"}, ("settings", "data")),
    ("causal_lm", {"data": "DATA", "text_column": "answer", "prompt_column": "question"},
     ("settings", "prompt_column")),
    ("classification", {"data": "DATA", "text_column": "prompt", "labels": ["only-one"]}, ("settings", "labels")),
    ("sparsity", {"threshold": 0.1}, ("settings", "threshold")),
    ("external", {"anything": 1}, ("settings",)),
    ("lm_eval", {"tasks": []}, ("settings", "tasks")),
    ("lm_eval", {"tasks": ["t"], "include_path": "/nowhere"}, ("settings", "include_path")),
    ("not a module:f", {}, ("evaluator",)),
])
def test_bad_settings_name_the_field(tmp_path: Path, evaluator: str, settings: dict, loc: tuple) -> None:
    if settings.get("data") == "DATA":
        settings = {**settings, "data": str(_write(tmp_path, ".jsonl"))}
    with pytest.raises(InvalidSpecError) as info:
        check_settings(evaluator, settings, ("objectives", 0))
    assert info.value.loc == ("objectives", 0, *loc), str(info.value)


def test_a_malformed_data_file_is_refused_when_the_spec_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(InvalidSpecError, match="cannot read"):
        check_settings("causal_lm", {"data": str(path)}, ("objectives", 0))


def _module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(source)


@pytest.mark.parametrize(("source", "settings", "style"), [
    ("def f(model, tokenizer, settings): return 1.0", {"task": "x"}, "mapping"),
    ("def f(model, tokenizer, task='a', limit=8): return 1.0", {"task": "x", "limit": 2}, "keywords"),
    ("def f(model, tokenizer, *, task, **more): return 1.0", {"task": "x", "other": 1}, "keywords"),
    ("def f(model, tokenizer, config): return 1.0", {"task": "x"}, "mapping"),
    ("def f(model, tokenizer): return 1.0", {}, "keywords"),
])
def test_a_user_function_is_called_as_its_signature_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           source: str, settings: dict, style: str) -> None:
    from mergefront.objectives import call_style, load_function

    name = f"sig_{tmp_path.name}"  # a module of its own per case (imported modules are cached)
    _module(tmp_path, name, source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_settings(f"{name}:f", settings, ("objectives", 0)) == settings
    assert call_style(load_function(f"{name}:f"), settings, f"{name}:f") == style


def test_a_user_function_that_cannot_take_its_settings_is_refused_saying_how_it_is_called(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _module(tmp_path, "sig_bad", "def accuracy(model, tokenizer, task='a', limit=8): return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InvalidSpecError) as info:
        check_settings("sig_bad:accuracy", {"task": "x", "shots": 5}, ("objectives", 0))
    assert info.value.loc == ("objectives", 0, "settings")
    assert "function(model, tokenizer, **settings)" in info.value.message and "shots" in info.value.message


def test_a_module_next_to_the_spec_wins_over_an_installed_one_and_errors_name_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import yaml

    from mergefront.spec import load_spec

    pytest.importorskip("evaluate")  # Hugging Face's package, installed with lm-eval: the name a user picked too
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "evaluate", raising=False)
    _module(tmp_path, "evaluate", "def accuracy(model, tokenizer, settings): return 1.0\n")
    spec = {"models": {"base": "bench://digits/base", "experts": ["bench://digits/rotated"]},
            "merge": {"method": "task_arithmetic"},
            "objectives": [{"evaluator": "evaluate:accuracy", "direction": "maximize"}]}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    try:
        assert load_spec(tmp_path / "job.yaml").objectives[0].evaluator == "evaluate:accuracy"
        assert sys.path[0] == str(tmp_path)
        with pytest.raises(InvalidSpecError) as info:
            check_settings("evaluate:precision", {}, ("objectives", 0))
        assert str(tmp_path / "evaluate.py") in info.value.message
    finally:
        sys.modules.pop("evaluate", None)
