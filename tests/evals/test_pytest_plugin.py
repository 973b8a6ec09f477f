"""assert_llm and the pytest plugin (evals/pytest_plugin.py), run as a user would: in a pytest session."""
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import llmkit as lk
from llmkit.evals import assert_llm

pytest_plugins = ["pytester"]

JUDGE = '''
import json
from llmkit.core.types import Completion, Usage
from llmkit.models.base import Model


class Judge(Model):
    """Always gives the same verdict."""
    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens"})
    constraint_kinds = frozenset({"json", "json_schema"})

    def __init__(self, score, reasoning):
        super().__init__("judge")
        self.reply = json.dumps({"reasoning": reasoning, "score": score})

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        return Completion(text=self.reply, finish_reason="stop", usage=Usage(output_tokens=9))
'''


def test_failure_message_shows_output_expectations_and_the_judges_reasoning(pytester):
    pytester.makepyfile(JUDGE + '''
from llmkit.evals import assert_llm


def test_capital():
    assert_llm("The capital is Lyon.", contains="Paris", icontains="CAPITAL", not_contains="Berlin",
               rubric="Names Paris as the capital.", judge=Judge(1, "The answer names Lyon; the capital is Paris."))


def test_long_reasoning_is_shown_whole():
    assert_llm("Lyon.", rubric="Names Paris.", judge=Judge(2, "Wrong city. " * 40 + "THE END"))
''')
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*assert_llm: 2 of 4 expectations failed",
        "*output:",
        "*    The capital is Lyon.",
        "*expectations:",
        "*FAIL  contains: expected to contain 'Paris'; got 'The capital is Lyon.'",
        "*PASS  icontains: expected to contain 'CAPITAL' (any case)*",
        "*PASS  not-contains: expected not to contain 'Berlin'*",
        ("*FAIL  llm-rubric: expected to satisfy the rubric 'Names Paris as the capital.'; the judge scored 1 on 1-5"
         " (0.00): The answer names Lyon; the capital is Paris."),
    ])
    result.stdout.fnmatch_lines(["*judge reasoning: Wrong city.*THE END"])
    text = result.stdout.str()
    assert "assert_llm(\"The capital is Lyon.\"" in text  # the user's line, not the plugin's (tracebackhide)
    assert "raise AssertionError(failure_message" not in text


def test_a_passing_call_passes(pytester):
    pytester.makepyfile(JUDGE + '''
from llmkit import Completion, Usage
from llmkit.evals import assert_llm


def test_plain_checks():
    results = assert_llm("The capital of France is Paris.", contains=["Paris", "France"], icontains="capital",
                         not_contains="Lyon", regex=r"Paris\\.$", equals="The capital of France is Paris.")
    assert len(results) == 6 and all(r.passed for r in results)


def test_a_completion_and_a_judge():
    c = Completion(text='{"city": "Paris"}', usage=Usage(output_tokens=6))
    assert_llm(c, is_json={"type": "object", "required": ["city"]}, contains="{{ city }}", vars={"city": "Paris"},
               rubric="Names Paris.", judge=Judge(5, "Correct."))
''')
    pytester.runpytest().assert_outcomes(passed=2)


def test_the_llm_judge_fixture_comes_from_the_entry_point(pytester):
    assert any(ep.value == "llmkit.evals.pytest_plugin" for ep in entry_points(group="pytest11")), \
        "llmkit's pytest11 entry point is not installed: pip install -e . (pyproject.toml declares it)"
    pytester.makepyfile("def test_x(): pass\n")
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["llm_judge [[]session scope[]]*", "*default judge*"])


@pytest.mark.integration
def test_llm_judge_is_the_embedded_model_once_per_session(pytester):
    pytester.makepyfile('''
import llmkit as lk

seen = []

def test_a(llm_judge):
    assert isinstance(llm_judge, lk.Model) and llm_judge.provider == "local"
    seen.append(llm_judge)

def test_b(llm_judge):
    assert llm_judge is seen[0]
''')
    pytester.runpytest().assert_outcomes(passed=2)


def test_loading_the_plugin_imports_no_model_library():
    code = ("import sys, llmkit.evals.pytest_plugin; "
            "print([m for m in ('torch', 'llama_cpp', 'transformers', 'sentence_transformers') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_bad_calls_raise_config_errors():
    with pytest.raises(lk.ConfigError, match="needs an expectation"):
        assert_llm("Paris")
    with pytest.raises(lk.ConfigError, match="str or an llmkit Completion, got int"):
        assert_llm(42, contains="4")
    with pytest.raises(lk.ConfigError, match="threshold applies to similar= and rubric="):
        assert_llm("Paris", contains="Paris", threshold=0.5)
    with pytest.raises(lk.ConfigError, match="not a valid regular expression"):
        assert_llm("Paris", regex="(")
