"""Suites, the runner, the cache, reports and `llmkit eval`, against a loopback OpenAI-compatible
server (its request count proves what the cache saves) and, in one test, the embedded model."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import llmkit as lk
from llmkit.evals import load_run, load_suite, report, run_suite
from loopback import Loopback, Reply

CAPITALS = {"France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Peru": "Lima"}


def answer(req):
    """A fake model: knows capitals, except Peru's (so one case fails)."""
    question = req.json["messages"][-1]["content"]
    country = next((c for c in CAPITALS if c in question), None)
    text = "I am not sure." if country in (None, "Peru") else f"The capital is {CAPITALS[country]}."
    return Reply(200, {"id": "x", "object": "chat.completion", "created": 1, "model": "fake",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def write_suite(tmp_path: Path, url: str, extra: str = "", cases: str | None = None) -> Path:
    (tmp_path / "cases.jsonl").write_text("\n".join(
        json.dumps({"description": c, "vars": {"country": c}, "assert": [{"type": "icontains", "value": cap}]})
        for c, cap in CAPITALS.items()) + "\n")
    path = tmp_path / "suite.yaml"
    path.write_text(f"""description: capitals
prompts:
  - "What is the capital of {{{{country}}}}?"
models:
  - spec: openai:fake
    label: fake
    options: {{base_url: "{url}/v1", api_key: sk-test, max_retries: 0}}
sampling: {{temperature: 0, max_tokens: 16}}
tests:
{cases or "  - file: cases.jsonl"}
{extra}""")
    return path


def test_second_run_makes_no_model_calls_and_gives_the_same_results(tmp_path):
    with Loopback(answer) as srv:
        suite = load_suite(write_suite(tmp_path, srv.url))
        first = run_suite(suite, progress=False)
        assert len(srv.requests) == 4 and first.calls == 4
        second = run_suite(suite, progress=False)
        assert len(srv.requests) == 4 and second.calls == 0          # all from the cache
    assert [r.output.text for r in second.rows] == [r.output.text for r in first.rows]
    assert all(r.output.cached for r in second.rows) and not any(r.output.cached for r in first.rows)
    assert [r.passed for r in first.rows] == [True, True, True, False]   # Peru fails
    assert first.pass_rate("fake") == 0.75 and not first.passed


def test_repeat_samples_each_time_and_reports_pass_rates(tmp_path):
    flips = iter([True, False, True] * 10)

    def sometimes(req):
        r = answer(req)
        if not next(flips):
            r.body["choices"][0]["message"]["content"] = "No idea."
        return r

    with Loopback(sometimes) as srv:
        path = write_suite(tmp_path, srv.url, cases='  - {vars: {country: France}, assert: [{type: icontains, value: paris}]}')
        suite = load_suite(path)
        suite.sampling["temperature"] = 0.7
        run = run_suite(suite, repeat=3, progress=False)
        seeds = [r.json["seed"] for r in srv.requests]
    assert len(run.rows) == 3 and sorted(seeds) == [0, 1, 2]       # repeat i samples with seed + i
    assert run.case_rates() == {(0, "fake", run.prompts[0]): 2 / 3}  # flaky: passes 2 of 3


def test_filter_and_rate_limit(tmp_path):
    with Loopback(answer) as srv:
        path = write_suite(tmp_path, srv.url)
        text = path.read_text().replace("max_retries: 0}", "max_retries: 0}\n    rps: 20")
        path.write_text(text)
        t0 = time.perf_counter()
        run = run_suite(load_suite(path), filter="Ita|Jap", cache=False, progress=False)
        elapsed = time.perf_counter() - t0
    assert [r.description for r in run.rows] == ["Italy", "Japan"] and len(srv.requests) == 2
    assert elapsed >= 0.05   # two starts at 20 per second are at least 50 ms apart
    with pytest.raises(lk.ConfigError, match="matches no case"):
        run_suite(load_suite(path), filter="Atlantis", progress=False)


def test_a_failing_call_fails_its_case_and_is_not_cached(tmp_path):
    with Loopback(lambda req: Reply(400, {"error": {"message": "bad model"}})) as srv:
        suite = load_suite(write_suite(tmp_path, srv.url))
        run = run_suite(suite, progress=False)
        run_suite(suite, progress=False)
        assert len(srv.requests) == 8   # errors are asked again, never served from the cache
    assert not any(r.passed for r in run.rows) and all("bad model" in r.output.error for r in run.rows)
    assert all(not x.passed and "bad model" in x.reason for r in run.rows for x in r.results)


@pytest.mark.parametrize("text, where", [
    ("prompts: []\ntests: [{vars: {}}]\n", ":1: prompts: List should have at least 1 item"),
    ("prompts: [hi]\ntests:\n  - vars: {}\n    assert:\n      - {type: contians, value: x}\n", ":5: tests.0.assert.0"),
    ("prompts: [hi]\nmodels: [local]\ntests: [{vars: {}}]\nfrobnicate: 1\n", ":4: frobnicate: unknown field"),
    ("prompts: [hi\n", "not valid YAML"),
])
def test_malformed_suites_name_file_line_and_field(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(lk.ConfigError) as e:
        load_suite(path)
    assert str(path) in str(e.value) and where in str(e.value), str(e.value)


def test_a_missing_variable_is_named(tmp_path):
    with Loopback(answer) as srv:
        path = write_suite(tmp_path, srv.url, cases="  - {vars: {nation: France}}")
        with pytest.raises(lk.ConfigError, match="'country' is undefined"):
            run_suite(load_suite(path), progress=False)


def test_report_and_compare(tmp_path):
    with Loopback(answer) as srv:
        a = run_suite(load_suite(write_suite(tmp_path, srv.url)), progress=False)
    a.save()
    page = report.html(load_run(a.id))
    assert page.startswith("<!doctype html>") and "<svg" in page and "Peru" in page and "I am not sure." in page
    assert page.count("class='fail'") == 1 and page.count("class='pass'") == 3
    assert "<script" not in page and "src=" not in page   # self-contained: nothing to fetch
    b_rows = [r for r in a.rows]
    b = type(a)(**{**a.__dict__, "id": a.id + "b", "rows": [
        type(r)(**{**r.__dict__, "passed": r.description != "Italy"}) for r in b_rows]})
    worse, better = report.compare(a, b)
    assert [c.description for c in worse] == ["Italy"] and [c.description for c in better] == ["Peru"]


def llmkit_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "llmkit", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_cli_exit_codes_and_summary(tmp_path, llmkit_home):
    with Loopback(answer) as srv:
        path = write_suite(tmp_path, srv.url)
        r = llmkit_cli("eval", "run", str(path), "--html", str(tmp_path / "r.html"))
        assert r.returncode == 1, r.stderr                      # Peru fails
        assert "FAIL case 3 [fake] Peru" in r.stdout and "icontains" in r.stdout and "75%" in r.stdout
        assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
        ok = llmkit_cli("eval", "run", str(path), "--filter", "France")
        assert ok.returncode == 0 and "0 model calls" in ok.stdout   # cached from the first run
        report_path = llmkit_cli("eval", "report", "latest")
        assert report_path.returncode == 0 and Path(report_path.stdout.strip()).is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts: [hi]\ntests: [{vars: {}, asert: []}]\n")
    r = llmkit_cli("eval", "run", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "bad.yaml:2" in r.stderr and "asert" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_quickstart_passes_on_the_embedded_model(embedded):
    suite = load_suite(Path(__file__).parents[2] / "examples" / "evals" / "quickstart.yaml")
    run = run_suite(suite, loaded={"local": embedded}, progress=False)
    failures = [(r.description, [x.reason for x in r.results if not x.passed]) for r in run.rows if not r.passed]
    assert run.passed, failures
    assert len(run.rows) == len(suite.cases) >= 6


def test_rate_limited_calls_are_retried_by_the_runner(tmp_path):
    seen = []

    def limited(req):
        seen.append(1)
        return Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0.1"}) if len(seen) == 1 \
            else answer(req)

    with Loopback(limited) as srv:
        run = run_suite(load_suite(write_suite(tmp_path, srv.url, cases="  - {vars: {country: France}}")),
                        progress=False, cache=False)
    assert len(seen) == 2 and run.rows[0].output.text == "The capital is Paris." and run.rows[0].output.error is None


def test_cli_lists_tasks_and_rejects_a_log_likelihood_task_on_llama_cpp():
    r = llmkit_cli("eval", "tasks")
    assert r.returncode == 0 and r.stdout.split() == ["arithmetic_mc", "capitals_gen", "wiki_ppl"]
    bad = llmkit_cli("eval", "task", "arithmetic_mc", "-m", "local", "--limit", "2")
    assert bad.returncode == 2 and "hf:smollm2" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_provider_rate_limit_is_shared_by_its_models(tmp_path):
    inflight, peak = [0], [0]
    lock = threading.Lock()

    def slow(req):
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        time.sleep(0.05)
        with lock:
            inflight[0] -= 1
        return answer(req)

    with Loopback(slow) as srv:
        path = write_suite(tmp_path, srv.url, extra="concurrency: 8\nrate_limits: {openai: {concurrency: 2}}\n")
        text = path.read_text().replace("models:\n", f"""models:
  - spec: openai:fake2
    label: fake2
    options: {{base_url: "{srv.url}/v1", api_key: sk-test, max_retries: 0}}
""")
        path.write_text(text)
        run = run_suite(load_suite(path), cache=False, progress=False)
    assert len(run.rows) == 8 and peak[0] == 2   # two models, one provider limit of 2 in flight


def test_prices_give_answers_a_cost(tmp_path):
    with Loopback(answer) as srv:
        path = write_suite(tmp_path, srv.url, cases="  - {vars: {country: France}, assert: [{type: cost, value: 0.0001}]}")
        path.write_text(path.read_text().replace("    label: fake\n", "    label: fake\n    price: [2.0, 10.0]\n"))
        run = run_suite(load_suite(path), progress=False, cache=False)
    # 10 prompt tokens at $2/M + 5 completion tokens at $10/M
    assert run.rows[0].output.cost == pytest.approx(10 * 2e-6 + 5 * 1e-5) and run.rows[0].passed
