"""Modules on scripted models: Predict with demos, ChainOfThought, ReAct (llmkit's agent loop),
ProgramOfThought (real code in the sandbox), MultiChainComparison, BestOfN, Refine; composition,
inspect, save/load and evaluate."""
from __future__ import annotations

import json

import pytest
from scripted_lm import field, reverse_when_shown

from llmkit.core.errors import ConfigError
from llmkit.models.scripted import ScriptedModel
from llmkit.programs import (
    BestOfN,
    ChainOfThought,
    Example,
    InputField,
    Module,
    MultiChainComparison,
    OutputField,
    Predict,
    ProgramOfThought,
    ProgramOfThoughtError,
    ReAct,
    Refine,
    Signature,
    assertion_metric,
    evaluate,
    exact_match,
    using,
)
from llmkit.programs.predict import HINT_TEMPLATE

GOOD = Example(word="sun", answer="nus")
BAD = Example(word="moon", answer="moon")


class Reverse(Signature):
    """Reverse the word."""

    word: str = InputField(desc="one word")
    answer: str = OutputField(desc="the word spelt backwards")


def test_demos_are_few_shot_turns_and_change_the_answer():
    m = ScriptedModel(reverse_when_shown, repeat=True)
    p = Predict(Reverse, model=m)
    assert p(word="planet").answer == "planet"  # zero-shot: wrong on a long word
    p.demos = [GOOD]
    assert p(word="planet").answer == "tenalp"
    msgs = m.calls[-1][0]
    assert [x.role for x in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1].content == "word: sun" and json.loads(msgs[2].content) == {"answer": "nus"}
    assert field(msgs[3].content, "word") == "planet"


def test_inspect_shows_exactly_what_was_sent(capsys):
    m = ScriptedModel(reverse_when_shown, repeat=True)
    p = Predict(Reverse, model=m)
    p.demos = [GOOD]
    p(word="planet")
    text = p.inspect()
    assert capsys.readouterr().out.strip() == text.strip()
    for msg in m.calls[-1][0]:
        assert f"[{msg.role}]\n{msg.content}" in text  # every turn, verbatim, schema instructions included
    assert '[reply]\n{"answer": "tenalp"}' in text
    p(word="comet")
    assert p.inspect(2, show=False).count("=== call") == 2


class TwoStep(Module):
    def __init__(self):
        self.first = Predict("word -> answer")
        self.second = ChainOfThought("word, draft -> answer")

    def forward(self, word):
        draft = self.first(word=word).answer
        return self.second(word=word, draft=draft)


def two_step_model():
    def reply(msgs, tools):
        if "draft" in msgs[-1].content:
            return json.dumps({"reasoning": "checked", "answer": field(msgs[-1].content, "draft") + "!"})
        return json.dumps({"answer": field(msgs[-1].content, "word").upper()})
    return ScriptedModel(reply, repeat=True)


def test_composition_named_predictors_copies_and_using():
    prog = TwoStep()
    assert [n for n, _ in prog.named_predictors()] == ["first", "second"]
    with pytest.raises(ConfigError, match="has no model"):
        prog(word="sun")
    m = two_step_model()
    with using(m):
        assert prog(word="sun").answer == "SUN!"
    assert prog.set_model(m)(word="owl").reasoning == "checked"
    prog.first.demos = [GOOD]
    copy = prog.deepcopy()
    copy.first.demos.append(BAD)
    assert len(prog.first.demos) == 1 and copy.first.model is m  # demos copied, models shared
    assert prog.reset_copy().first.demos == [] and prog.first.demos == [GOOD]
    text = prog.inspect(2, show=False)
    assert "first" in text and "second" in text and "draft: OWL" in text
    with pytest.raises(ConfigError, match="missing: word"):
        prog.first(text="x")


def test_save_load_behaves_the_same(tmp_path):
    m = ScriptedModel(reverse_when_shown, repeat=True)
    p = ChainOfThought(Reverse, model=m, temperature=0.0)
    p.demos = [Example(word="sun", reasoning="backwards", answer="nus")]
    p.instructions = "Write the word backwards."
    before = p(word="planet")
    path = p.save(tmp_path / "p.json")
    saved = json.loads(path.read_text())
    assert saved["predictors"]["self"]["instructions"] == "Write the word backwards."
    assert saved["predictors"]["self"]["demos"] == [{"word": "sun", "reasoning": "backwards", "answer": "nus"}]

    rebuilt = Module.load(path, model=m)  # the class is rebuilt from the file
    into = ChainOfThought(Reverse, model=m).load(path)  # or loaded into a program of the same structure
    for q in (rebuilt, into):
        assert type(q) is ChainOfThought and q(word="planet") == before
        assert m.calls[-1][0] == m.calls[0][0]  # the very same messages were sent
    assert rebuilt.sampling == {"temperature": 0.0} and rebuilt.instructions == p.instructions

    prog = TwoStep()
    prog.first.demos = [GOOD]
    prog.save(tmp_path / "two.json")
    back = TwoStep.load(tmp_path / "two.json", model=two_step_model())
    assert back.first.demos == [GOOD] and back(word="owl").answer == "OWL!"
    with pytest.raises(ConfigError, match="predictors"):
        Predict("word -> answer").load(tmp_path / "two.json")
    with pytest.raises(ConfigError, match="needs arguments"):
        pot = ProgramOfThought("question -> answer: int")
        pot.save(tmp_path / "pot.json")
        Module.load(tmp_path / "pot.json")


def test_react_runs_tools_through_the_agent_loop(tmp_path):
    calls = []

    def add(a: int, b: int) -> int:
        "Add two integers."
        calls.append((a, b))
        return a + b

    m = ScriptedModel([{"name": "add", "arguments": {"a": 2, "b": 3}}, "The sum is 5.", '{"answer": 5}'])
    agent = ReAct("question -> answer: int", tools=[add], model=m, max_steps=4)
    pred = agent(question="What is 2 + 3?")
    assert pred.answer == 5 and calls == [(2, 3)]
    assert m.calls[0][2][0].name == "add"  # the tool was offered natively
    assert m.calls[1][0][-1].role == "tool" and m.calls[1][0][-1].content == "5"
    with pytest.raises(ConfigError, match="tools"):
        Module.load(agent.save(tmp_path / "react.json"))
    assert ReAct("question -> answer: int", tools=[add]).load(tmp_path / "react.json").tools
    text = agent.inspect(show=False)
    assert "-> add({\"a\": 2, \"b\": 3})" in text and "[tool add]\n5" in text and '{"answer":5}' in text


def test_react_text_mode_for_models_without_tool_calling():
    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    m = ScriptedModel(['Thought: add them\nAction: add\nAction Input: {"a": 20, "b": 22}',
                       "Thought: I now know the final answer\nFinal Answer: 42", '{"answer": 42}'])
    agent = ReAct("question -> answer: int", tools=[add], model=m, mode="react")
    assert agent(question="20 + 22?").answer == 42
    assert "Observation: 42" in m.calls[1][0][-1].content and "question: 20 + 22?" in m.calls[0][0][-1].content


def test_react_asks_for_outputs_when_the_budget_runs_out():
    def ping() -> str:
        "Ping."
        return "pong"

    m = ScriptedModel([{"name": "ping", "arguments": {}}, "I will stop.", '{"answer": "pong"}'])
    pred = ReAct("question -> answer", tools=[ping], model=m, max_steps=1)(question="ping?")
    assert pred.answer == "pong"


def test_program_of_thought_runs_code_and_retries_on_error():
    m = ScriptedModel(['{"code": "print(1 / 0)"}',
                       '{"code": "```python\\nprint(sum(range(1, 11)))\\n```"}'])
    pot = ProgramOfThought("question -> answer: int", model=m)
    pred = pot(question="What is 1 + 2 + ... + 10?")
    assert pred.answer == 55 and isinstance(pred.answer, int)
    fix_prompt = m.calls[1][0][-1].content
    assert "ZeroDivisionError" in field(fix_prompt, "error") or "ZeroDivisionError" in fix_prompt
    assert "previous_code: print(1 / 0)" in fix_prompt
    assert [r.ok for _, r in pot.runs] == [False, True]
    assert [n for n, _ in pot.named_predictors()] == ["generate", "regenerate"]


def test_program_of_thought_reads_several_outputs_and_gives_up_clearly():
    m = ScriptedModel(['{"code": "print(7)"}',  # one number where an object is needed: fed back as an error
                       '{"code": "import json; print(json.dumps({\\"q\\": 7 // 2, \\"r\\": 7 % 2}))"}'])
    pred = ProgramOfThought("n: int -> q: int, r: int", model=m)(n=7)
    assert (pred.q, pred.r) == (3, 1)
    assert "could not be read" in m.calls[1][0][-1].content
    m = ScriptedModel('{"code": "raise SystemExit(3)"}', repeat=True)
    with pytest.raises(ProgramOfThoughtError, match="failed 2 time"):
        ProgramOfThought("q -> a: int", model=m, max_iters=2)(q="?")


def test_multi_chain_comparison_compares_sampled_attempts():
    attempts = [{"reasoning": "6 * 7", "answer": "42"}, {"reasoning": "6 + 7", "answer": "13"},
                {"reasoning": "7 * 6", "answer": "42"}]
    m = ScriptedModel([json.dumps(a) for a in attempts] + ['{"rationale": "two agree on 42", "answer": "42"}'])
    mcc = MultiChainComparison("question -> answer", M=3, model=m)
    pred = mcc(question="6 times 7?")
    assert pred.answer == "42" and pred.rationale == "two agree on 42"
    assert [c[1].temperature for c in m.calls[:3]] == [0.7, 0.7, 0.7]
    compare = m.calls[3][0][-1].content
    assert "attempt_2: reasoning: 6 + 7\noutputs: answer='13'" in compare
    with pytest.raises(ValueError, match="compares 3"):
        mcc(question="?", completions=attempts[:2])


def one_word(inputs, pred):
    return float(len(pred.answer.split()) == 1)


def test_best_of_n_stops_at_the_threshold_and_keeps_the_best():
    m = ScriptedModel(['{"answer": "it is Brussels"}', '{"answer": "Brussels"}', '{"answer": "never asked"}'])
    best = BestOfN(Predict("question -> answer", model=m), N=3, reward_fn=one_word, threshold=1.0)
    assert best(question="Capital of Belgium?").answer == "Brussels"
    assert [r for _, r in best.attempts] == [0.0, 1.0] and len(m.calls) == 2
    assert m.calls[0][1].temperature is None and m.calls[1][1].temperature == 1.0  # later attempts sample
    m = ScriptedModel(['{"answer": "a b c"}', '{"answer": "a b"}'])
    partial = BestOfN(Predict("question -> answer", model=m), N=2,
                      reward_fn=lambda i, p: 1 / len(p.answer.split()), threshold=1.0)
    assert partial(question="?").answer == "a b"  # none reached it: the best is returned


def test_refine_feeds_back_how_the_last_attempt_fell_short():
    m = ScriptedModel(['{"answer": "it is Brussels"}', '{"answer": "Brussels"}'])
    refine = Refine(Predict("question -> answer", model=m), N=3, reward_fn=one_word, threshold=1.0,
                    feedback=lambda inputs, pred, r: "Answer with one word.")
    assert refine(question="Capital of Belgium?").answer == "Brussels"
    first, second = m.calls[0][0][-1].content, m.calls[1][0][-1].content
    assert "Feedback" not in first
    assert HINT_TEMPLATE.split("{hint}")[0].strip() in second
    assert "'it is Brussels'" in second and "scored 0.00" in second and "Answer with one word." in second


def test_evaluate_scores_threads_and_errors():
    m = ScriptedModel(reverse_when_shown, repeat=True)
    p = Predict(Reverse, model=m)
    p.demos = [GOOD]
    dev = [Example(word=w, answer=w[::-1].upper()).with_inputs("word") for w in ("cat", "planet", "comet", "sky")]
    result = evaluate(p, dev, exact_match, threads=2, progress=True)
    assert result.score == 1.0 and [r.prediction.answer for r in result.results] == ["tac", "tenalp", "temoc", "yks"]
    assert evaluate(p, dev, assertion_metric("contains", "{{ answer }}")).score == 0.0  # case counts here
    assert evaluate(p, dev, assertion_metric("icontains", "{{ answer }}")).score == 1.0
    p.demos = []
    assert evaluate(p, dev, exact_match).score == 0.5  # zero-shot: only the short words
    broken = [Example(word="x", answer="x").with_inputs("word"), Example(answer="Y").with_inputs()]
    r = evaluate(p, broken, exact_match)
    assert r.score == 0.5 and len(r.errors) == 1 and "missing: word" in r.errors[0].error


def test_exact_match_normalises_text_and_numbers():
    ex = Example(q="?", answer="Paris").with_inputs("q")
    from llmkit.programs import Prediction
    assert exact_match(ex, Prediction(answer="  paris. "))
    assert not exact_match(ex, Prediction(answer="Lyon"))
    assert not exact_match(ex, Prediction(other="Paris"))
    assert exact_match(Example(q="?", answer=55).with_inputs("q"), Prediction(answer="55"))


@pytest.mark.integration
def test_predict_on_the_embedded_model_returns_a_typed_output(embedded):
    class Count(Signature):
        """Count the words in the sentence."""

        sentence: str = InputField()
        words: int = OutputField(desc="how many words")

    p = Predict(Count, model=embedded, temperature=0.0, max_tokens=32)
    pred = p(sentence="the cat sat")
    assert isinstance(pred.words, int)
    assert "sentence: the cat sat" in p.inspect(show=False)
