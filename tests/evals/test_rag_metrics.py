"""RAG metrics (evals/rag_metrics.py): retrieval metrics by hand and against sklearn; the judged
metrics with a scripted judge whose verdicts are fixed in advance or computed from the prompt."""
import json
import math

import pytest

import llmkit as lk
from llmkit.evals import rag_metrics as rm
from llmkit.models.base import Model

# --- retrieval metrics -------------------------------------------------------------------------------

def test_binary_metrics_by_hand():
    ranked, rel = ["d4", "d1", "d9", "d2", "d7"], {"d1", "d2", "d3"}
    assert rm.hit_at_k(ranked, rel, 1) == 0.0 and rm.hit_at_k(ranked, rel, 2) == 1.0
    assert rm.recall_at_k(ranked, rel, 2) == pytest.approx(1 / 3)
    assert rm.recall_at_k(ranked, rel, 5) == pytest.approx(2 / 3)
    assert rm.precision_at_k(ranked, rel, 4) == pytest.approx(2 / 4)
    assert rm.precision_at_k(ranked, rel, 10) == pytest.approx(2 / 10)  # divided by k, not by what was retrieved
    assert rm.mrr(ranked, rel) == pytest.approx(1 / 2)
    assert rm.mrr(ranked, rel, k=1) == 0.0 and rm.mrr(["x"], rel) == 0.0
    # an id retrieved twice is one hit
    assert rm.precision_at_k(["d1", "d1"], {"d1"}, 2) == 0.5 and rm.recall_at_k(["d1", "d1"], {"d1", "d2"}, 2) == 0.5
    # nothing relevant: 0, never a division by zero
    assert rm.recall_at_k(ranked, set(), 3) == 0.0 and rm.ndcg_at_k(ranked, set(), 3) == 0.0


def test_graded_ndcg_by_hand():
    ranked, grades = ["d2", "d1", "d4", "d3"], {"d1": 3, "d3": 2, "d5": 1}
    # DCG@4  = 0/log2(2) + 3/log2(3) + 0/log2(4) + 2/log2(5) = 1.892789 + 0.861353 = 2.754142
    # IDCG@4 = 3/log2(2) + 2/log2(3) + 1/log2(4)             = 3 + 1.261860 + 0.5  = 4.761860
    #   (the ideal order uses every grade, d5 included, though d5 was never retrieved)
    # nDCG@4 = 2.754142 / 4.761860 = 0.578375
    assert rm.ndcg_at_k(ranked, grades, 4) == pytest.approx(0.578375, abs=1e-6)
    # @2: DCG = 3/log2(3) = 1.892789; IDCG = 3 + 2/log2(3) = 4.261860 -> 0.444122
    assert rm.ndcg_at_k(ranked, grades, 2) == pytest.approx(0.444122, abs=1e-6)
    assert rm.ndcg_at_k(["d1", "d3", "d5"], grades, 3) == pytest.approx(1.0)
    assert rm.ndcg_at_k(ranked, {"d1": 3, "d2": 0}, 1) == 0.0  # grade 0 = not relevant
    # a set means grade 1 each: the relevant id at rank 2 of 2 -> (1/log2(3)) / 1
    assert rm.ndcg_at_k(["a", "b"], {"b"}, 2) == pytest.approx(1 / math.log2(3))


def test_ndcg_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    cases = [
        (["d2", "d1", "d4", "d3"], {"d1": 3, "d3": 2, "d5": 1}, 4),
        (["d2", "d1", "d4", "d3"], {"d1": 3, "d3": 2, "d5": 1}, 2),
        (["a", "b", "c", "d", "e", "f"], {"f": 1, "c": 2.5, "a": 0.5, "z": 4}, 5),
        (["a", "b", "c"], {"b", "c", "q"}, 3),
        (["x", "y", "z", "w"], {"w": 1}, 1),
    ]
    for ranked, relevant, k in cases:
        grades = relevant if isinstance(relevant, dict) else {d: 1 for d in relevant}
        universe = ranked + [d for d in grades if d not in ranked]
        y_true = [[grades.get(d, 0) for d in universe]]
        # retrieved ids scored by rank; the rest tie below them, out of the top k (k <= len(ranked))
        y_score = [[len(ranked) - ranked.index(d) if d in ranked else -1 for d in universe]]
        expected = sklearn.ndcg_score(y_true, y_score, k=k)
        assert rm.ndcg_at_k(ranked, relevant, k) == pytest.approx(expected, abs=1e-12), (ranked, relevant, k)


def test_retrieval_report_means():
    runs = [(["d3", "d1", "d2"], {"d1"}), (["d2"], {"d2", "d5"})]
    r = rm.retrieval_report(runs, ks=(1, 3))
    assert r["queries"] == 2 and r["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert r["hit@1"] == 0.5 and r["hit@3"] == 1.0
    assert r["recall@3"] == pytest.approx((1 + 1 / 2) / 2)
    assert r["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert r["ndcg@1"] == pytest.approx((0 + 1) / 2)
    # query 2 @3: DCG = 1, IDCG = 1 + 1/log2(3)
    assert r["ndcg@3"] == pytest.approx(((1 / math.log2(3)) + 1 / (1 + 1 / math.log2(3))) / 2)
    assert set(r) == {"queries", "mrr"} | {f"{m}@{k}" for m in ("hit", "recall", "precision", "ndcg") for k in (1, 3)}


def test_retrieval_bad_input_is_named():
    with pytest.raises(lk.ConfigError, match="k=0"):
        rm.recall_at_k(["a"], {"a"}, 0)
    with pytest.raises(lk.ConfigError, match="not a string"):
        rm.hit_at_k(["a"], "a", 1)
    with pytest.raises(lk.ConfigError, match="grade -1"):
        rm.ndcg_at_k(["a"], {"a": -1}, 1)
    with pytest.raises(lk.ConfigError, match="at least one"):
        rm.retrieval_report([])


# --- a scripted judge ---------------------------------------------------------------------------------

class Judge(Model):
    """Answers each judged step with JSON: from a list fixed in advance, or computed from the prompt by
    ``rule`` (a function of the prompt and the schema's name). Records every prompt it was sent."""

    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens"})
    constraint_kinds = frozenset({"json", "json_schema", "choice"})

    def __init__(self, replies=None, rule=None):
        super().__init__("judge")
        self.replies, self.rule, self.prompts, self.schemas = list(replies or []), rule, [], []

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        prompt = messages[-1].content
        self.prompts.append(prompt)
        self.schemas.append(constraint.name)
        reply = self.replies.pop(0) if self.replies else self.rule(prompt, constraint.name)
        return lk.Completion(text=reply if isinstance(reply, str) else json.dumps(reply), finish_reason="stop")


def _sentences(text):
    return [s.strip() + "." for s in text.split(".") if s.strip()]


def _norm(s):
    return s.lower().rstrip(".").strip()


def rule(prompt, schema):
    """A literal-minded judge: the claims of a text are its sentences; a statement is supported when the
    context contains it word for word; a chunk is useful when it contains the reference answer or is part of it."""
    if schema == "Claims":
        return {"claims": _sentences(prompt.rsplit("\nText: ", 1)[1])}
    if schema == "Verdicts":
        context, statements = prompt.split("Context:\n", 1)[1].split("\n\nStatements:\n", 1)
        claims = [line.split(". ", 1)[1] for line in statements.splitlines()]
        return {"verdicts": [{"reason": "found" if _norm(c) in context.lower() else "absent",
                              "verdict": int(_norm(c) in context.lower())} for c in claims]}
    if schema == "Verdict":
        reference = prompt.split("Reference answer: ", 1)[1].split("\n", 1)[0]
        context = prompt.split("Context:\n", 1)[1]
        useful = _norm(reference) in context.lower() or _norm(context) in reference.lower()
        return {"reason": "has the answer" if useful else "off topic", "verdict": int(useful)}
    raise AssertionError(f"unexpected step {schema}")


class Toy:
    """An embedder with hand-set vectors (not normalised, so the cosine must divide by the norms)."""

    def __init__(self, vectors):
        self.vectors = vectors

    def embed(self, texts):
        return [self.vectors[t] for t in texts]


Q = "Where is the Eiffel Tower and what is it made of?"
PARIS, IRON, TALL = "The Eiffel Tower is in Paris.", "The Eiffel Tower is made of iron.", "The Eiffel Tower is 330 metres tall."


# --- faithfulness ------------------------------------------------------------------------------------

def test_faithfulness_fully_supported_and_one_unsupported_claim():
    judge = Judge(rule=rule)
    full = rm.faithfulness(judge, Q, f"{PARIS} {IRON}", [f"Landmarks. {PARIS}", f"{IRON} It opened in 1889."])
    assert full.score == 1.0 and full.name == "faithfulness"
    assert [c["claim"] for c in full.details["claims"]] == [PARIS, IRON]
    part = rm.faithfulness(judge, Q, f"{PARIS} {IRON} {TALL}", [PARIS, IRON])
    assert part.score == pytest.approx(2 / 3) and part.reason == "2 of 3 claims in the answer are supported by the contexts"
    assert [(c["claim"], c["verdict"], c["reason"]) for c in part.details["claims"]] == \
        [(PARIS, 1, "found"), (IRON, 1, "found"), (TALL, 0, "absent")]
    # the prompts carry the question, the answer, every context, and the claims to judge, numbered
    claims_prompt, verdicts_prompt = judge.prompts[-2:]
    assert judge.schemas[-2:] == ["Claims", "Verdicts"]
    assert Q in claims_prompt and f"{PARIS} {IRON} {TALL}" in claims_prompt
    assert f"[1] {PARIS}" in verdicts_prompt and f"[2] {IRON}" in verdicts_prompt and f"3. {TALL}" in verdicts_prompt
    assert claims_prompt.startswith(rm.CLAIMS_TEMPLATE.split("{")[0]) and "JSON Schema" not in claims_prompt


def test_faithfulness_without_claims_is_defined():
    judge = Judge(['{"claims": []}'])
    r = rm.faithfulness(judge, Q, "I'm not sure.", [PARIS])
    assert r.score == 1.0 and "no factual claim" in r.reason and r.details == {"claims": []} and len(judge.prompts) == 1
    empty = rm.faithfulness(Judge(), Q, "", [PARIS])  # nothing to decompose: no judge call at all
    assert empty.score == 1.0 and not math.isnan(empty.score)
    # claims but no context: each is unsupported, without asking
    judge = Judge(rule=rule)
    r = rm.faithfulness(judge, Q, PARIS, [])
    assert r.score == 0.0 and len(judge.prompts) == 1 and r.details["claims"][0]["verdict"] == 0


def test_verdicts_line_up_with_claims_or_are_asked_again():
    two = {"verdicts": [{"reason": "ok", "verdict": 1}] * 2}  # 2 verdicts for 3 claims: invalid
    three = {"verdicts": [{"reason": "ok", "verdict": 1}, {"reason": "no", "verdict": 0}, {"reason": "ok", "verdict": 1}]}
    judge = Judge([{"claims": [PARIS, IRON, TALL]}, two, three])
    r = rm.faithfulness(judge, Q, "...", [PARIS])
    assert r.score == pytest.approx(2 / 3) and [c["verdict"] for c in r.details["claims"]] == [1, 0, 1]
    assert len(judge.prompts) == 3 and "not valid" in judge.prompts[2]


# --- context precision and recall ---------------------------------------------------------------------

def test_context_precision_ranks_the_useful_chunk():
    judge = Judge(rule=rule)
    good, bad1, bad2 = "Paris is the capital of France.", "Berlin is in Germany.", "Rome is in Italy."
    first = rm.context_precision(judge, "Capital of France?", [good, bad1, bad2], "Paris")
    last = rm.context_precision(judge, "Capital of France?", [bad1, bad2, good], "Paris")
    assert first.score == 1.0 and last.score == pytest.approx(1 / 3) and first.score > last.score
    assert [(c["rank"], c["verdict"], c["precision_at_k"]) for c in last.details["chunks"]] == \
        [(1, 0, 0.0), (2, 0, 0.0), (3, 1, pytest.approx(1 / 3))]
    # two useful chunks at ranks 1 and 3: (1/1 + 2/3) / 2
    assert rm.context_precision(judge, "Capital of France?", [good, bad1, good], "Paris").score == pytest.approx(5 / 6)
    none = rm.context_precision(judge, "Capital of France?", [bad1], "Paris")
    assert none.score == 0.0 and "none of the 1 chunks" in none.reason
    # one prompt per chunk, in rank order, each with the question, the reference and that chunk only
    assert len(judge.prompts) == 10
    p = judge.prompts[3]
    assert "Capital of France?" in p and "Reference answer: Paris" in p and bad1 in p and good not in p


def test_context_recall_half():
    judge = Judge(rule=rule)
    r = rm.context_recall(judge, Q, ["The Eiffel Tower is in Paris, France.", "It is popular."], f"{PARIS} {TALL}")
    assert r.score == 0.5 and r.name == "context_recall"
    assert [(c["claim"], c["verdict"]) for c in r.details["claims"]] == [(PARIS, 1), (TALL, 0)]
    assert f"{PARIS} {TALL}" in judge.prompts[0] and "[2] It is popular." in judge.prompts[1]


# --- noise sensitivity --------------------------------------------------------------------------------

REFERENCE = f"{PARIS} {IRON} {TALL}"
WRONG = "The Eiffel Tower is 300 metres tall."
ANSWER = f"{PARIS} {IRON} {WRONG}"


def test_noise_sensitivity_counts_the_incorrect_claim_from_a_relevant_context():
    judge = Judge(rule=rule)
    contexts = [f"{PARIS} {WRONG}", "Bananas are yellow."]  # context 1 is relevant (it supports a reference claim)
    r = rm.noise_sensitivity(judge, Q, ANSWER, contexts, REFERENCE)
    assert r.score == pytest.approx(1 / 3) and r.details["relevant_contexts"] == [1]
    rows = {c["claim"]: c for c in r.details["claims"]}
    assert rows[WRONG]["counted"] and not rows[WRONG]["correct"] and rows[WRONG]["relevant_contexts"] == [1]
    assert rows[IRON]["correct"] and not rows[IRON]["counted"]  # correct, though no context says it
    # Ragas' order: claims(reference), claims(answer), per context (reference, answer), answer vs reference
    assert judge.schemas == ["Claims", "Claims"] + ["Verdicts"] * 5
    assert REFERENCE in judge.prompts[0] and ANSWER in judge.prompts[1]
    assert contexts[1] in judge.prompts[4] and f"Context:\n{REFERENCE}" in judge.prompts[6]
    # the same wrong claim, in the irrelevant mode: it came from a relevant context, so it is not noise
    assert rm.noise_sensitivity(Judge(rule=rule), Q, ANSWER, contexts, REFERENCE, mode="irrelevant").score == 0.0


def test_noise_sensitivity_irrelevant_mode():
    contexts = [PARIS, WRONG]  # context 2 supports no reference claim: noise, and the answer took from it
    assert rm.noise_sensitivity(Judge(rule=rule), Q, ANSWER, contexts, REFERENCE).score == 0.0
    r = rm.noise_sensitivity(Judge(rule=rule), Q, ANSWER, contexts, REFERENCE, mode="irrelevant")
    assert r.score == pytest.approx(1 / 3) and r.details["relevant_contexts"] == [1]
    assert [c["irrelevant_contexts"] for c in r.details["claims"] if c["counted"]] == [[2]]
    correct = rm.noise_sensitivity(Judge(rule=rule), Q, REFERENCE, contexts, REFERENCE)
    assert correct.score == 0.0 and correct.reason.startswith("0 of 3")
    with pytest.raises(lk.ConfigError, match="mode='noisy'"):
        rm.noise_sensitivity(Judge(), Q, ANSWER, contexts, REFERENCE, mode="noisy")


# --- answer relevancy ---------------------------------------------------------------------------------

def test_answer_relevancy_cosine_math_and_noncommittal():
    toy = Toy({Q: [1.0, 0.0], "q1": [3.0, 3.0], "q2": [2.0, 0.0]})
    judge = Judge([{"questions": ["q1", "q2"], "noncommittal": 0}, {"questions": ["q1", "q2"], "noncommittal": 1}])
    r = rm.answer_relevancy(judge, Q, PARIS, embedder=toy, n=2)
    assert r.score == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    assert [q["similarity"] for q in r.details["questions"]] == [pytest.approx(1 / math.sqrt(2)), pytest.approx(1.0)]
    # the judge writes questions from the answer alone: the real question must not leak into its prompt
    assert PARIS in judge.prompts[0] and Q not in judge.prompts[0] and "Write 2 different questions" in judge.prompts[0]
    vague = rm.answer_relevancy(judge, Q, "It depends.", embedder=toy, n=2)
    assert vague.score == 0.0 and vague.details["noncommittal"] and "noncommittal" in vague.reason
    assert rm.answer_relevancy(Judge(), Q, " ", embedder=toy).score == 0.0  # empty answer: no call
    with pytest.raises(lk.ConfigError, match="n=0"):
        rm.answer_relevancy(Judge(), Q, PARIS, embedder=toy, n=0)


@pytest.mark.integration
def test_answer_relevancy_with_the_embedded_embedder():
    q = "How tall is the Eiffel Tower?"
    same = Judge([{"questions": [q] * 3, "noncommittal": 0}])
    assert rm.answer_relevancy(same, q, "It is 330 metres tall.").score == pytest.approx(1.0, abs=1e-5)
    other = Judge([{"questions": ["How do bees make honey?", "What is a prime number?", "Who wrote Hamlet?"],
                    "noncommittal": 0}])
    unrelated = rm.answer_relevancy(other, q, "Bees make honey from nectar.")
    close = rm.answer_relevancy(Judge([{"questions": ["What is the height of the Eiffel Tower?",
                                                      "How high is the Eiffel Tower?", "How tall is the tower in Paris?"],
                                        "noncommittal": 0}]), q, "It is 330 metres tall.")
    assert unrelated.score < 0.3 and 0.7 < close.score < 1.0
    vague = rm.answer_relevancy(Judge([{"questions": [q] * 3, "noncommittal": 1}]), q, "I'm not sure.")
    assert vague.score == 0.0 and vague.details["questions"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)


# --- templates ----------------------------------------------------------------------------------------

def test_templates_are_overridable():
    judge = Judge(rule=rule)
    mine = "Split into sentences. Q: {question}\nText: {text}"
    rm.faithfulness(judge, Q, PARIS, [PARIS], templates={"claims": mine})
    assert judge.prompts[0] == f"Split into sentences. Q: {Q}\nText: {PARIS}"
    assert judge.prompts[1].startswith(rm.VERDICTS_TEMPLATE.split("{")[0])  # the other step keeps its default
    judge = Judge([{"reason": "r", "verdict": 1}])
    rm.context_precision(judge, "Capital?", ["Paris is big."], "Paris", template="Q={question} R={reference}\nContext:\n{context}")
    assert judge.prompts == ["Q=Capital? R=Paris\nContext:\nParis is big."]
    judge = Judge([{"questions": ["a"], "noncommittal": 0}])
    rm.answer_relevancy(judge, Q, PARIS, embedder=Toy({Q: [1.0], "a": [1.0]}), n=1, template="{n} for: {answer}")
    assert judge.prompts == [f"1 for: {PARIS}"]
    with pytest.raises(lk.ConfigError, match="'usefulness'.*steps: claims, verdicts"):
        rm.faithfulness(Judge(), Q, PARIS, [PARIS], templates={"usefulness": "x"})
    with pytest.raises(lk.ConfigError, match=r"'claims' template cannot be filled.*\{question\}, \{text\}"):
        rm.faithfulness(Judge(), Q, PARIS, [PARIS], templates={"claims": "Claims of {answer}"})


def test_bad_inputs_are_named():
    with pytest.raises(lk.ConfigError, match="contexts must be a list of strings"):
        rm.faithfulness(Judge(), Q, PARIS, PARIS)
    with pytest.raises(lk.ConfigError, match="reference must be a non-empty string"):
        rm.context_recall(Judge(), Q, [PARIS], "")
    with pytest.raises(lk.ConfigError, match="question must be"):
        rm.context_precision(Judge(), None, [PARIS], "Paris")


# --- a batch ------------------------------------------------------------------------------------------

def test_evaluate_rag_per_sample_and_means():
    toy = Toy({Q: [1.0, 0.0], "Where is it?": [1.0, 1.0]})
    questions = {"questions": ["Where is it?"] * 3, "noncommittal": 0}

    def scripted(prompt, schema):
        return questions if schema == "GeneratedQuestions" else rule(prompt, schema)

    samples = [
        {"question": Q, "answer": f"{PARIS} {IRON}", "contexts": [PARIS, IRON], "reference": f"{PARIS} {IRON}"},
        {"question": Q, "answer": f"{PARIS} {TALL}", "contexts": ["Bananas are yellow.", PARIS], "reference": f"{PARIS} {IRON}"},
    ]
    names = ["faithfulness", "answer_relevancy", "context_precision", "context_recall", "noise_sensitivity"]
    out = rm.evaluate_rag(Judge(rule=scripted), samples, names, embedder=toy)
    scores = [{k: r.score for k, r in row.items()} for row in out["samples"]]
    assert scores[0] == {"faithfulness": 1.0, "answer_relevancy": pytest.approx(1 / math.sqrt(2)),
                         "context_precision": 1.0, "context_recall": 1.0, "noise_sensitivity": 0.0}
    assert scores[1] == {"faithfulness": 0.5, "answer_relevancy": pytest.approx(1 / math.sqrt(2)),
                         "context_precision": 0.5, "context_recall": 0.5, "noise_sensitivity": 0.0}
    assert out["means"] == {k: pytest.approx((scores[0][k] + scores[1][k]) / 2) for k in names}
    assert out["samples"][1]["faithfulness"].details["claims"][1] == {"claim": TALL, "verdict": 0, "reason": "absent"}
    # step templates reach the metrics that have those steps
    judge = Judge(rule=scripted)
    rm.evaluate_rag(judge, samples[:1], ["context_precision", "faithfulness"],
                    templates={"usefulness": "U {question}\nReference answer: {reference}\nContext:\n{context}"})
    assert judge.prompts[0].startswith("U ") and judge.prompts[2].startswith(rm.CLAIMS_TEMPLATE[:20])


def test_evaluate_rag_checks_every_sample_before_judging():
    judge = Judge(rule=rule)
    samples = [{"question": Q, "answer": PARIS, "contexts": [PARIS], "reference": PARIS}, {"question": Q, "answer": PARIS}]
    with pytest.raises(lk.ConfigError, match="sample 1 lacks contexts, which faithfulness needs"):
        rm.evaluate_rag(judge, samples, ["faithfulness"])
    assert judge.prompts == []
    with pytest.raises(lk.ConfigError, match="no RAG metric 'bleu'; accepted: faithfulness"):
        rm.evaluate_rag(judge, samples, ["bleu"])
    with pytest.raises(lk.ConfigError, match="no step named 'verdict'"):
        rm.evaluate_rag(judge, samples, templates={"verdict": "x"})


# --- the embedded model as judge ----------------------------------------------------------------------

@pytest.mark.integration
def test_embedded_judge_gives_scores_with_details(embedded):
    """Every judged step runs through the real 135M model under its schema: scores land in [0, 1] and
    carry their verdicts (whether the tiny judge is right is not the point)."""
    sample = {"question": "Where is the Eiffel Tower?", "answer": "The Eiffel Tower is in Paris.",
              "contexts": ["The Eiffel Tower is a landmark in Paris, France."],
              "reference": "The Eiffel Tower is in Paris, France."}
    out = rm.evaluate_rag(embedded, [sample], list(rm.METRICS), temperature=0, max_tokens=384)
    row = out["samples"][0]
    assert set(row) == set(rm.METRICS)
    for name, r in row.items():
        assert 0.0 <= r.score <= 1.0 and r.name == name and r.reason and r.details, (name, r)
        assert out["means"][name] == r.score
    chunk, = row["context_precision"].details["chunks"]
    assert chunk["verdict"] in (0, 1) and isinstance(chunk["reason"], str)
    assert len(row["answer_relevancy"].details["questions"]) == 3
    for name in ("faithfulness", "context_recall"):
        assert all(c["verdict"] in (0, 1) for c in row[name].details["claims"])
