"""What travels to the nodes of a cluster: bundles of files, the job's own modules, the suite; no Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergefront.evaluators.bundle import pack, unpack
from mergefront.evaluators.cluster import code_runtime_env, module_paths, node_cache_dir, user_modules


def test_bundle_unpacks_once_into_a_folder_named_by_its_content(tmp_path: Path) -> None:
    package = tmp_path / "src" / "mypkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("X = 1\n")
    (package / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"stale")
    (tmp_path / "src" / "single.py").write_text("Y = 2\n")
    bundle = pack("modules", package, tmp_path / "src" / "single.py")
    assert sorted(bundle.files) == ["mypkg/__init__.py", "single.py"]  # byte code stays home
    folder = unpack(bundle, tmp_path / "node")
    assert folder.name == f"modules-{bundle.digest}" and (folder / "mypkg" / "__init__.py").read_text() == "X = 1\n"
    (folder / "single.py").write_text("changed")  # written once: a second unpack finds the folder and keeps it
    assert unpack(bundle, tmp_path / "node") == folder and (folder / "single.py").read_text() == "changed"
    (package / "__init__.py").write_text("X = 2\n")
    assert unpack(pack("modules", package), tmp_path / "node") != folder  # other content, other folder


def test_user_modules_are_found_where_the_server_imports_them_and_installed_ones_are_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_objectives.py").write_text("def f(model, tokenizer, settings):\n    return 1.0\n")
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = user_modules(["my_objectives:f", "my_pkg.sub:g", None, "causal_lm", "mergefront.x:y", "my_pkg:h",
                          "yaml:safe_load", "math:sqrt"])
    assert names == ["my_objectives", "my_pkg", "yaml", "math"]
    # yaml is an installed package (the nodes' image has it), math is built in: neither travels
    assert module_paths(names) == [str(tmp_path / "my_objectives.py"), str(tmp_path / "my_pkg")]


def test_runtime_env_ships_mergefront_as_this_process_imports_it() -> None:
    import mergefront

    env = code_runtime_env()
    assert env["py_modules"] == [str(Path(mergefront.__file__).resolve().parent)]
    assert "__pycache__" in env["excludes"]


def test_node_cache_follows_the_nodes_own_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MERGEFRONT_CACHE_DIR", raising=False)
    monkeypatch.setenv("MERGEFRONT_HOME", str(tmp_path / "home"))
    assert node_cache_dir() == tmp_path / "home" / "cache"
    monkeypatch.setenv("MERGEFRONT_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert node_cache_dir() == tmp_path / "elsewhere"


def test_worker_on_a_node_without_the_servers_files_evaluates_from_the_shipped_suite(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's cluster setup names no path of the server's: the worker puts the suite in its node's cache and
    scores exactly what a worker on the server's own files scores."""
    from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator
    from mergefront.evaluators.merge import MergeConfig
    from mergefront.service.runner import JobRunner
    from mergefront.service.settings import Settings
    from mergefront.service.space import job_files
    from mergefront.spec import JobSpec

    spec = JobSpec.model_validate({
        "models": {"base": "bench://digits/base", "experts": ["bench://digits/rotated", "bench://digits/parity"]},
        "merge": {"method": "task_arithmetic", "weight": {"low": 0, "high": 1}},
        "objectives": [{"task": "rotated"}, {"task": "parity"}], "resources": {"device": "cpu"}})
    settings = Settings(home=tmp_path / "server", cache_dir=cache_dir)
    runner = JobRunner(session_factory=None, settings=settings)  # type: ignore[arg-type]
    files = job_files(spec, settings)
    local, remote = (runner._worker_setup(spec, files, cluster) for cluster in (False, True))
    assert remote.suite_dir is None and remote.python_path == ()
    assert (remote.base, remote.experts) == ("base.safetensors", ("rotated.safetensors", "parity.safetensors"))
    monkeypatch.setenv("MERGEFRONT_HOME", str(tmp_path / "node"))
    monkeypatch.delenv("MERGEFRONT_CACHE_DIR", raising=False)
    candidate = Candidate(1, MergeConfig("task_arithmetic", params={"weight": (0.7, 0.4)}))
    scores = [CandidateEvaluator(setup).evaluate(candidate).metrics for setup in (local, remote)]
    assert scores[0] == scores[1]
    assert [p.name for p in (tmp_path / "node" / "cache").glob("digits-*") if p.is_dir()] == \
        [f"{remote.suite_files.name}-{remote.suite_files.digest}"]  # type: ignore[union-attr]
