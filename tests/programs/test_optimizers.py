"""Optimisers on scripted models whose answers depend on the demonstrations (or instructions)
they are shown: each test proves the optimiser picks what raises the metric, and that a saved,
reloaded program behaves the same."""
from __future__ import annotations

import json

from hash_embedder import HashEmbedder
from scripted_lm import demos, field, reverse_when_shown

from llmkit.models.scripted import ScriptedModel
from llmkit.programs import (
    COPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    Example,
    InputField,
    KNNFewShot,
    LabeledFewShot,
    Module,
    OutputField,
    Predict,
    Signature,
    evaluate,
    exact_match,
)


class Reverse(Signature):
    """Reverse the word."""

    word: str = InputField()
    answer: str = OutputField()


def ex(word: str, answer: str | None = None) -> Example:
    return Example(word=word, answer=word[::-1] if answer is None else answer).with_inputs("word")


LONG_DEV = [ex(w) for w in ("planet", "comet", "galaxy", "nebula")]


def reverser() -> tuple[Predict, ScriptedModel]:
    m = ScriptedModel(reverse_when_shown, repeat=True)
    return Predict(Reverse, model=m), m


def test_bootstrap_keeps_only_traces_that_pass_the_metric(tmp_path):
    student, m = reverser()
    train = [ex("elephant"), ex("cat"), ex("giraffe"), ex("dog")]  # zero-shot, the teacher fails the long words
    opt = BootstrapFewShot(exact_match, max_bootstrapped_demos=4, max_labeled_demos=0)
    compiled = opt.compile(student, trainset=train)
    assert [(e.word, ok) for e, ok in opt.traces] == [("elephant", False), ("cat", True), ("giraffe", False),
                                                     ("dog", True)]
    assert [(d.word, d.answer) for d in compiled.demos] == [("cat", "tac"), ("dog", "god")]  # no failed trace
    assert student.demos == []  # the student is left as it was
    assert evaluate(student, LONG_DEV, exact_match).score == 0.0
    assert evaluate(compiled, LONG_DEV, exact_match).score == 1.0

    path = compiled.save(tmp_path / "boot.json")
    loaded = Module.load(path, model=m)
    n = len(m.calls)
    assert evaluate(loaded, LONG_DEV, exact_match).score == 1.0
    compiled(word="planet")
    assert m.calls[-1][0] == m.calls[n][0]  # the reloaded program sent exactly the same prompt


def test_bootstrap_with_labeled_teacher_never_shows_an_example_its_own_answer():
    student, m = reverser()
    train = [ex("elephant"), ex("giraffe"), ex("zebra")]
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=3).compile(student, train)
    for msgs, _, _ in m.calls:  # the teacher ran with the other labeled examples as demos
        shown = [field(u, "word") for u, _ in demos(msgs)]
        assert field(msgs[-1].content, "word") not in shown and len(shown) == 2
    assert [d.word for d in compiled.demos][:2] == ["elephant", "giraffe"]  # bootstrapped first,
    assert [d.word for d in compiled.demos][2:] == ["zebra"]  # then labeled ones up to max_labeled_demos


class ReverseThenShout(Module):
    def __init__(self):
        self.reverse = Predict(Reverse)
        self.shout = Predict("text -> loud")

    def forward(self, word):
        rev = self.reverse(word=word).answer
        return self.shout(text=rev)


def pipeline_model() -> ScriptedModel:
    def reply(msgs, tools):
        if "- text (str)" in msgs[0].content:
            return json.dumps({"loud": field(msgs[-1].content, "text").upper() + "!"})
        return reverse_when_shown(msgs, tools)
    return ScriptedModel(reply, repeat=True)


def test_bootstrap_gives_each_predictor_its_own_traced_demos():
    prog = ReverseThenShout().set_model(pipeline_model())
    train = [Example(word=w, loud=w[::-1].upper() + "!").with_inputs("word") for w in ("owl", "swan")]
    compiled = BootstrapFewShot(lambda e, p: p.loud == e.loud, max_labeled_demos=0).compile(prog, train)
    assert [d.to_dict() for d in compiled.reverse.demos] == [{"word": "owl", "answer": "lwo"}]
    assert [d.to_dict() for d in compiled.shout.demos] == [{"text": "lwo", "loud": "LWO!"}]  # the inner step's trace
    assert compiled(word="heron").loud == "NOREH!"  # long word: right only thanks to the bootstrapped demo
    assert prog(word="heron").loud == "HERON!"


def test_random_search_picks_the_demo_set_that_scores_best_on_validation():
    student, _ = reverser()
    # a mislabeled example first: the zero-shot teacher "passes" it, so in-order bootstrapping keeps a bad demo
    train = [ex("elephant", "elephant"), ex("cat"), ex("dog"), ex("owl")]
    opt = BootstrapFewShotWithRandomSearch(exact_match, num_candidate_programs=4, max_bootstrapped_demos=1,
                                           max_labeled_demos=0, threads=2)
    best = opt.compile(student, trainset=train, valset=LONG_DEV)
    scores = {c.label: c.score for c in opt.candidates}
    assert scores["zero-shot"] == 0.0 and scores["bootstrap (training-set order)"] == 0.0
    assert opt.candidates[2].program.demos[0].word == "elephant"
    assert max(scores.values()) == 1.0 and evaluate(best, LONG_DEV, exact_match).score == 1.0
    assert [d.word for d in best.demos] != ["elephant"] and len(best.demos) == 1
    assert len(opt.candidates) == 3 + 4


class Transform(Signature):
    """Apply the task to the word."""

    task: str = InputField()
    word: str = InputField()
    answer: str = OutputField()


RULES = {"reverse": lambda w: w[::-1], "double": lambda w: w + w, "dashes": lambda w: "-".join(w)}


def task_model() -> ScriptedModel:
    """Does a task right only when a demo of the same task is in the prompt."""
    def reply(msgs, tools):
        task, word = field(msgs[-1].content, "task"), field(msgs[-1].content, "word")
        seen = {field(u, "task") for u, _ in demos(msgs)}
        return json.dumps({"answer": RULES[task](word) if task in seen else word})
    return ScriptedModel(reply, repeat=True)


def tex(task: str, word: str) -> Example:
    return Example(task=task, word=word, answer=RULES[task](word)).with_inputs("task", "word")


def test_knn_chooses_demos_per_input_by_similarity():
    train = [tex("reverse", "apple"), tex("double", "pear"), tex("dashes", "plum"),
             tex("reverse", "mango"), tex("double", "lime"), tex("dashes", "fig")]
    dev = [tex("dashes", "kiwi"), tex("reverse", "melon"), tex("double", "cherry")]
    m = task_model()
    student = Predict(Transform, model=m)
    fixed = LabeledFewShot(k=1, sample=False).compile(student, train)
    assert evaluate(fixed, dev, exact_match).score == 1 / 3  # one fixed demo helps one task only
    emb = HashEmbedder()
    knn = KNNFewShot(k=1, trainset=train, embedder=emb).compile(student)
    result = evaluate(knn, dev, exact_match, threads=2)
    assert result.score == 1.0
    for msgs, _, _ in m.calls[-3:]:
        assert [field(u, "task") for u, _ in demos(msgs)] == [field(msgs[-1].content, "task")]
    assert emb.calls == 1 + 3  # the training set once, then each input
    assert student.demos == [] and knn.program.demos == []  # demos are per call, not stored
    assert [n for n, _ in knn.named_predictors()] == ["program"]
    assert "task: " in knn.inspect(show=False)


def instruction_model() -> ScriptedModel:
    """Reverses only when the instructions say "backwards"; proposes instructions when asked to."""
    def reply(msgs, tools):
        system = msgs[0].content
        if "- proposed_instructions" in system:
            if "- attempts (str)" in system:
                return json.dumps({"proposed_instructions": ["Write the word backwards, last letter first."]})
            return json.dumps({"proposed_instructions": ["Rewrite the word.", "Transform the word carefully."]})
        word = field(msgs[-1].content, "word")
        return json.dumps({"answer": word[::-1] if "backwards" in system else word})
    return ScriptedModel(reply, repeat=True)


def test_copro_proposes_scores_and_keeps_the_best_instructions(tmp_path):
    m = instruction_model()
    student = Predict(Reverse.with_instructions("Transform the word."), model=m)
    copro = COPRO(exact_match, breadth=2, depth=2)
    tuned = copro.compile(student, trainset=LONG_DEV)
    assert tuned.instructions == "Write the word backwards, last letter first."
    assert student.instructions == "Transform the word."
    assert [(t.instructions, t.score, t.round) for t in copro.results] == [
        ("Transform the word.", 0.0, 0), ("Rewrite the word.", 0.0, 1), ("Transform the word carefully.", 0.0, 1),
        ("Write the word backwards, last letter first.", 1.0, 2)]
    refine_prompt = copro.refiner.inspect(show=False)
    assert "Instructions: Rewrite the word.\nScore: 0.000" in refine_prompt  # the proposer saw the scores
    assert evaluate(tuned, LONG_DEV, exact_match).score == 1.0
    back = Predict(Reverse, model=m).load(tuned.save(tmp_path / "copro.json"))
    assert back.instructions == tuned.instructions and evaluate(back, LONG_DEV, exact_match).score == 1.0


def test_copro_keeps_the_original_when_nothing_beats_it():
    m = instruction_model()
    student = Predict(Reverse.with_instructions("Spell it backwards."), model=m)
    tuned = COPRO(exact_match, breadth=2, depth=1).compile(student, trainset=LONG_DEV[:2])
    assert tuned.instructions == "Spell it backwards."


def test_metric_threshold_for_float_metrics():
    student, _ = reverser()
    half = lambda e, p: 0.5 if p.answer == e.answer else 0.0
    train = [ex("cat"), ex("dog")]
    assert BootstrapFewShot(half, max_labeled_demos=0).compile(student, train).demos  # truthy passes
    assert not BootstrapFewShot(half, metric_threshold=0.9, max_labeled_demos=0).compile(student, train).demos
