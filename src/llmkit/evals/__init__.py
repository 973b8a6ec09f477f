"""Evaluation: suites, assertions, judges, benchmarks, RAG metrics and reports.

    >>> from llmkit.evals import load_suite, run_suite
    >>> run = run_suite(load_suite("examples/evals/quickstart.yaml"))
    >>> run.passed, run.pass_rate()

Modules, each importable by name: ``suite`` (the YAML format), ``runner`` (run, cache, save),
``assertions``, ``judges`` (LLM-as-a-judge), ``leaderboard`` (Bradley–Terry, Elo), ``harness``
(log-likelihood benchmarks, perplexity), ``rag_metrics``, ``report`` (HTML, compare),
``pytest_plugin`` (``assert_llm``). Names below load on first use, so ``import llmkit`` stays light.
"""
from __future__ import annotations

_LAZY = {
    "load_suite": ("suite", "load"), "Suite": ("suite", "Suite"),
    "run_suite": ("runner", "run_suite"), "load_run": ("runner", "load_run"), "Run": ("runner", "Run"),
    "Output": ("types", "Output"), "Result": ("types", "Result"),
    "Assertion": ("assertions", "Assertion"), "assert_llm": ("pytest_plugin", "assert_llm"),
    "report": ("report", None),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'llmkit.evals' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    return mod if attr is None else getattr(mod, attr)
