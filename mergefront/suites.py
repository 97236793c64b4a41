"""Names of the built-in benchmark suites, known without importing torch.

The suites themselves are built in `mergefront.evaluators.suites`; a test checks that both agree.
"""

from __future__ import annotations

#: suite name -> the tasks it has (each task has one expert and one held-out evaluation set).
BUILTIN_SUITES: dict[str, tuple[str, ...]] = {
    "digits": ("rotated", "inverted", "noisy", "parity", "mod3"),
    "tinylm": ("copy", "reverse", "sort", "add"),
}

#: suite name -> {metric its evaluators report: the metric's worst value, the default reference point}.
#: tinylm's loss is the answer tokens' cross-entropy, unbounded: 8.0 is well above ln(20) = 3.0 (a uniform guess
#: over its vocabulary) and above what one-expert and TIES merges score on the other tasks (up to about 5).
SUITE_METRICS: dict[str, dict[str, float]] = {
    "digits": {"accuracy": 0.0},
    "tinylm": {"accuracy": 0.0, "loss": 8.0},
}

#: suites whose models are Hugging Face directories with a tokenizer, so evaluators that run a model can score them.
HF_SUITES: frozenset[str] = frozenset({"tinylm"})

BENCH_SCHEME = "bench://"


def parse_bench_ref(ref: str) -> tuple[str, str]:
    """Split `bench://suite/name` into (suite, name); raise ValueError when it is not one."""
    if not ref.startswith(BENCH_SCHEME):
        raise ValueError(f"{ref!r} is not a bench:// reference")
    suite, _, name = ref[len(BENCH_SCHEME) :].partition("/")
    if suite not in BUILTIN_SUITES:
        raise ValueError(f"unknown built-in suite {suite!r} in {ref!r}; known: {sorted(BUILTIN_SUITES)}")
    known = ("base", *BUILTIN_SUITES[suite])
    if name not in known:
        raise ValueError(f"{ref!r} names no model of suite {suite!r}; known: {list(known)}")
    return suite, name
