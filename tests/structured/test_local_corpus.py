"""Every schema of the corpus (tests/data/schemas) on the embedded model: greedy and sampled
outputs all parse and validate. Checked with ``jsonschema`` itself, not with llmkit's own check."""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

import llmkit as lk


pytestmark = pytest.mark.integration

CORPUS = sorted((Path(__file__).parent.parent / "data" / "schemas").glob("*.json"))
MAX_TOKENS = 512  # the longest bounded answers (4 invoice items of 50-character strings) need ~400
MODES = {"greedy": dict(temperature=0), "sampled": dict(temperature=0.8, seed=7)}


@pytest.fixture(scope="module")
def outputs(embedded):
    """All schemas × modes at once: the engine batches them, so the corpus runs in one pass."""
    jobs = [(path, mode) for path in CORPUS for mode in MODES]

    def run(job):
        path, mode = job
        case = json.loads(path.read_text())
        try:
            return embedded.json(case["prompt"], schema=case["schema"], max_tokens=MAX_TOKENS, max_retries=0,
                                 **MODES[mode])
        except lk.StructuredOutputError as e:  # reported by the test of this schema, not the whole corpus
            return e

    with ThreadPoolExecutor(16) as pool:
        return dict(zip(jobs, pool.map(run, jobs)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_output_validates(outputs, path, mode):
    schema = json.loads(path.read_text())["schema"]
    value = outputs[(path, mode)]
    assert not isinstance(value, Exception), f"{value} — output: {value.text!r}"
    errors = [e.message for e in Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(value)]
    assert not errors, (value, errors)
