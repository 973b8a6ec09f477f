"""RAG metrics: retrieval metrics over ranked ids, and Ragas' LLM-judged metrics over any judge model.

Retrieval metrics are pure functions of a ranked list of ids and the relevant ids (a set, or a
dict of graded relevance for nDCG):

    >>> from llmkit.evals.rag_metrics import ndcg_at_k, retrieval_report
    >>> ndcg_at_k(["d3", "d1", "d7"], {"d1": 2, "d7": 1}, k=3)
    0.6696...
    >>> retrieval_report([(["d3", "d1"], {"d1"}), (["d2"], {"d2"})], ks=(1, 3))["mrr"]
    0.75

Judged metrics follow Ragas' definitions. Every judged step is one of the templates below, sent
as a user message and answered through ``judge.json(..., schema=<Pydantic model>)``, so the
verdicts always parse (token masks on local judges, validate-and-retry on remote ones), and each
result keeps the per-claim or per-chunk verdicts in ``details``:

    | metric             | steps (templates)                                        | score            |
    |--------------------|----------------------------------------------------------|------------------|
    | faithfulness       | claims(answer); verdicts(claims | contexts)              | supported/claims |
    | answer_relevancy   | questions(answer) + embeddings                           | mean cosine      |
    | context_precision  | usefulness(chunk | question, reference), one per chunk   | average precision|
    | context_recall     | claims(reference); verdicts(claims | contexts)           | attributed/claims|
    | noise_sensitivity  | claims(reference, answer); verdicts per context and vs   | incorrect/claims |
    |                    | the reference                                            | (lower is better)|

    >>> import llmkit as lk
    >>> judge = lk.model("openai:gpt-4o-mini")
    >>> r = faithfulness(judge, "Where is the Eiffel Tower?", "It is in Paris, and 500 m tall.",
    ...                  ["The Eiffel Tower is a landmark in Paris."])
    >>> r.score, r.reason
    (0.5, '1 of 2 claims in the answer are supported by the contexts')
    >>> print(CLAIMS_TEMPLATE)          # every prompt is visible, and replaceable per call
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from ..core.errors import ConfigError
from ..core.types import user

# --- retrieval metrics ------------------------------------------------------------------------------

Relevant = Iterable[Hashable] | dict[Hashable, float]


def _grades(relevant: Relevant) -> dict[Hashable, float]:
    """Relevant ids as {id: grade}: a set gives grade 1; a dict keeps its grades (0 = not relevant)."""
    if isinstance(relevant, (str, bytes)):
        raise ConfigError(f"relevant={relevant!r} must be a collection of ids (a set, list or {{id: grade}} dict), not a string")
    if not isinstance(relevant, dict):
        return {d: 1.0 for d in relevant}
    for d, g in relevant.items():
        if isinstance(g, bool) or not isinstance(g, (int, float)) or g < 0 or math.isnan(g):
            raise ConfigError(f"relevance grade {g!r} for id {d!r} must be a number >= 0")
    return {d: float(g) for d, g in relevant.items() if g > 0}


def _top(ranked: Iterable[Hashable], k: int | None) -> list[Hashable]:
    if isinstance(ranked, (str, bytes)):
        raise ConfigError(f"ranked={ranked!r} must be a list of ids, not a string")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ConfigError(f"k={k!r} must be a positive integer")
    return list(dict.fromkeys(ranked))[:k]  # an id retrieved twice is one hit, not two


def hit_at_k(ranked: Iterable[Hashable], relevant: Relevant, k: int = 10) -> float:
    """1.0 if any of the first ``k`` ids is relevant, else 0.0.

    Example:
        >>> hit_at_k(["a", "b", "c"], {"c"}, k=2)
        0.0
    """
    rel = _grades(relevant)
    return float(any(d in rel for d in _top(ranked, k)))


def recall_at_k(ranked: Iterable[Hashable], relevant: Relevant, k: int = 10) -> float:
    """Share of the relevant ids found in the first ``k`` (0.0 when nothing is relevant).

    Example:
        >>> recall_at_k(["a", "b", "c"], {"a", "c", "z"}, k=3)
        0.666...
    """
    rel = _grades(relevant)
    return sum(d in rel for d in _top(ranked, k)) / len(rel) if rel else 0.0


def precision_at_k(ranked: Iterable[Hashable], relevant: Relevant, k: int = 10) -> float:
    """Relevant ids among the first ``k``, divided by ``k`` even when fewer were retrieved (as trec_eval does).

    Example:
        >>> precision_at_k(["a", "b"], {"a"}, k=4)
        0.25
    """
    rel = _grades(relevant)
    return sum(d in rel for d in _top(ranked, k)) / k


def mrr(ranked: Iterable[Hashable], relevant: Relevant, k: int | None = None) -> float:
    """Reciprocal rank of the first relevant id (within the first ``k`` if given), 0.0 if none.

    Example:
        >>> mrr(["a", "b", "c"], {"b", "c"})
        0.5
    """
    rel = _grades(relevant)
    return next((1 / i for i, d in enumerate(_top(ranked, k), 1) if d in rel), 0.0)


def ndcg_at_k(ranked: Iterable[Hashable], relevant: Relevant, k: int = 10) -> float:
    """Normalised discounted cumulative gain: sum of grade / log2(rank + 1) over the first ``k``,
    divided by the same sum for the ideal order of all the relevance grades (linear gain, as
    ``sklearn.metrics.ndcg_score``). A set of relevant ids means grade 1 each.

    Example:
        >>> ndcg_at_k(["a", "b"], {"b"}, k=2)      # 1/log2(3) over 1/log2(2)
        0.6309...
    """
    grades = _grades(relevant)
    dcg = sum(grades.get(d, 0.0) / math.log2(i + 1) for i, d in enumerate(_top(ranked, k), 1))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, 1))
    return dcg / idcg if idcg else 0.0


def retrieval_report(runs: list[tuple[Iterable[Hashable], Relevant]], ks: Iterable[int] = (1, 3, 5, 10)) -> dict[str, float]:
    """Mean retrieval metrics over queries: ``mrr`` and, for each k, ``hit@k``, ``recall@k``,
    ``precision@k`` and ``ndcg@k``; ``queries`` is how many were averaged.

    Args:
        runs: one ``(ranked ids, relevant ids or {id: grade})`` pair per query.
        ks: the cut-offs.

    Example:
        >>> retrieval_report([(["d3", "d1"], {"d1"}), (["d2"], {"d2"})], ks=(1,))
        {'queries': 2, 'mrr': 0.75, 'hit@1': 0.5, 'recall@1': 0.5, 'precision@1': 0.5, 'ndcg@1': 0.5}
    """
    runs = [(list(r), rel) for r, rel in runs]
    if not runs:
        raise ConfigError("retrieval_report needs at least one (ranked, relevant) pair")
    out: dict[str, float] = {"queries": len(runs), "mrr": sum(mrr(r, rel) for r, rel in runs) / len(runs)}
    for k in ks:
        for name, fn in (("hit", hit_at_k), ("recall", recall_at_k), ("precision", precision_at_k), ("ndcg", ndcg_at_k)):
            out[f"{name}@{k}"] = sum(fn(r, rel, k) for r, rel in runs) / len(runs)
    return out


# --- judged metrics: templates ----------------------------------------------------------------------

#: Step "claims": break a text (an answer, or a reference answer) into atomic claims.
CLAIMS_TEMPLATE = """\
Break the text below into atomic claims: short statements of fact that can each be checked on their own.
Write every claim so that it is understandable alone: replace pronouns with the names they stand for.
Leave out greetings, hedges and anything that states no fact; a text that states no fact has no claims.

Example: for the question "Who was Albert Einstein?", the text "He was a German-born physicist, best known \
for the theory of relativity." has two claims: "Albert Einstein was a German-born physicist." and \
"Albert Einstein is best known for the theory of relativity."

Question: {question}
Text: {text}"""

#: Step "verdicts": for each numbered statement, can it be inferred from the context (1) or not (0)?
VERDICTS_TEMPLATE = """\
Judge each numbered statement against the context. Give verdict 1 if the statement can be directly \
inferred from the context, and 0 if it cannot: the context contradicts it or does not say. Judge by the \
context alone, not by what you know. Give one verdict per statement, in order, each with a short reason.

Context:
{context}

Statements:
{statements}"""

#: Step "questions" (answer relevancy): questions the answer answers, and whether it is noncommittal.
QUESTIONS_TEMPLATE = """\
Write {n} different questions that the answer below answers, phrased as a user would ask them.
Also say whether the answer is noncommittal: 1 if it is evasive, vague or ambiguous ("I don't know", \
"I'm not sure", "it depends"), 0 if it is substantive.

Example: "Albert Einstein was born in Germany." answers "Where was Albert Einstein born?" (noncommittal 0). \
"I don't know what the phone released in 2023 introduced." answers "What did the phone released in 2023 \
introduce?" (noncommittal 1).

Answer: {answer}"""

#: Step "usefulness" (context precision): was this one retrieved chunk useful for the reference answer?
USEFULNESS_TEMPLATE = """\
Given a question, its reference answer and one retrieved context, say whether the context was useful in \
arriving at the reference answer: verdict 1 if it was, 0 if it was not, with a short reason.

Question: {question}
Reference answer: {reference}
Context:
{context}"""

#: The steps by name, as ``templates={...}`` overrides name them.
STEPS = ("claims", "verdicts", "questions", "usefulness")

# --- judged metrics: what the judge fills in --------------------------------------------------------

MAX_CLAIMS = 40   # claims in one text: a long answer fits; a small local judge cannot list claims forever
MAX_TEXT = 300    # characters in one claim, reason or question

Text = Annotated[str, Field(max_length=MAX_TEXT)]


class Claims(BaseModel):
    """The atomic claims a text makes (none if it states no fact)."""

    claims: list[Text] = Field(max_length=MAX_CLAIMS, description="standalone statements of fact, without pronouns")


class Verdict(BaseModel):
    """One yes/no judgement, reason first (the judge explains, then decides)."""

    reason: Text = Field(description="one short sentence: why")
    verdict: Literal[0, 1] = Field(description="1 = yes, 0 = no")


@functools.cache
def verdicts_schema(n: int) -> type[BaseModel]:
    """Exactly ``n`` verdicts, so each lines up with its statement by position."""
    return create_model("Verdicts", __doc__=f"One verdict per statement, in order ({n} in all).",
                        verdicts=(Annotated[list[Verdict], Field(min_length=n, max_length=n)], ...))


@functools.cache
def questions_schema(n: int) -> type[BaseModel]:
    """Exactly ``n`` generated questions and the noncommittal flag."""
    return create_model("GeneratedQuestions", __doc__=f"{n} questions the answer answers.",
                        questions=(Annotated[list[Text], Field(min_length=n, max_length=n)], ...),
                        noncommittal=(Literal[0, 1], Field(description="1 if the answer is evasive or vague, 0 if substantive")))


@dataclass
class MetricResult:
    """One metric on one sample. ``score`` is in [0, 1] (higher is better, except noise_sensitivity);
    ``reason`` says why in one line; ``details`` holds the per-claim or per-chunk verdicts."""

    name: str
    score: float
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


# --- judged metrics: the steps ----------------------------------------------------------------------

def _text(value: Any, what: str, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or not (empty_ok or value.strip()):
        raise ConfigError(f"{what} must be a non-empty string, got {value!r:.80}")
    return value


def _contexts(contexts: Any) -> list[str]:
    if isinstance(contexts, str) or not isinstance(contexts, (list, tuple)) or not all(isinstance(c, str) for c in contexts):
        raise ConfigError(f"contexts must be a list of strings (the retrieved chunks, best first), got {contexts!r:.80}")
    return list(contexts)


def _templates(given: dict[str, str] | None, **defaults: str) -> dict[str, str]:
    """The default templates of a metric's steps, with the caller's overrides."""
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ConfigError(f"no step named {', '.join(map(repr, unknown))} here; this metric's steps: {', '.join(defaults)}")
    return {**defaults, **(given or {})}


def _ask(judge: Any, template: str, step: str, schema: type[BaseModel], options: dict[str, Any], **fields: Any) -> Any:
    """Fill a step's template and have the judge answer it as ``schema`` (temperature 0 unless overridden).

    The templates say in words what every field means, so the JSON Schema is not appended to the
    prompt (``instructions=False``; a small local judge copies schema keywords into its answer). The
    schema is enforced either way; pass ``instructions=True`` in the options to append it."""
    try:
        prompt = template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"the {step!r} template cannot be filled ({type(e).__name__}: {e}); it may use "
                          f"{', '.join('{' + f + '}' for f in fields)}, and literal braces are written {{{{ }}}}") from None
    return judge.json([user(prompt)], schema=schema, **{"temperature": 0, "instructions": False, **options})


def _claims(judge: Any, template: str, question: str, text: str, options: dict[str, Any]) -> list[str]:
    if not text.strip():
        return []  # an empty text states nothing; no need to ask
    out = _ask(judge, template, "claims", Claims, options, question=question, text=text)
    return [c.strip() for c in out.claims if c.strip()]


def _verdicts(judge: Any, template: str, claims: list[str], context: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """[{claim, verdict, reason}] for each claim judged against ``context``."""
    if not claims:
        return []
    if not context.strip():
        return [{"claim": c, "verdict": 0, "reason": "there is no context to infer it from"} for c in claims]
    statements = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
    out = _ask(judge, template, "verdicts", verdicts_schema(len(claims)), options, context=context, statements=statements)
    return [{"claim": c, "verdict": v.verdict, "reason": v.reason} for c, v in zip(claims, out.verdicts)]


def _join(contexts: list[str]) -> str:
    return "\n\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, 1))


def _claim_share(name: str, judge: Any, question: str, text: str, contexts: list[str], templates: dict[str, str] | None,
                 options: dict[str, Any], what: str, empty: str) -> MetricResult:
    """Claims of ``text``, each judged against all the contexts; score = supported / claims."""
    t = _templates(templates, claims=CLAIMS_TEMPLATE, verdicts=VERDICTS_TEMPLATE)
    claims = _claims(judge, t["claims"], question, text, options)
    if not claims:
        return MetricResult(name, 1.0, empty, {"claims": []})
    verdicts = _verdicts(judge, t["verdicts"], claims, _join(contexts), options)
    n = sum(v["verdict"] for v in verdicts)
    return MetricResult(name, n / len(claims), f"{n} of {len(claims)} claims in {what} are supported by the contexts",
                        {"claims": verdicts})


# --- judged metrics ---------------------------------------------------------------------------------

def faithfulness(judge: Any, question: str, answer: str, contexts: list[str], *,
                 templates: dict[str, str] | None = None, **options: Any) -> MetricResult:
    """Share of the answer's claims that the retrieved contexts support (Ragas' faithfulness).

    Two judge calls: ``claims`` (the answer's atomic claims), then ``verdicts`` (each claim against
    all the contexts, numbered). An answer with no claims (empty, or a bare refusal) scores 1.0:
    it asserts nothing the contexts fail to support, and ``reason`` says so.

    Args:
        judge: any llmkit model (``llmkit.model(...)``).
        templates: overrides for the steps ``claims`` and ``verdicts`` (see ``CLAIMS_TEMPLATE``, ``VERDICTS_TEMPLATE``).
        **options: passed to ``judge.json`` (``max_tokens``, ``max_retries``, ``temperature`` (default 0)...).

    Example:
        >>> r = faithfulness(judge, "Capital of France?", "Paris. It has 40 million people.", ["Paris is France's capital."])
        >>> r.score, [c["verdict"] for c in r.details["claims"]]
        (0.5, [1, 0])
    """
    return _claim_share("faithfulness", judge, _text(question, "question"), _text(answer, "answer", empty_ok=True),
                        _contexts(contexts), templates, options, "the answer",
                        "the answer makes no factual claim, so none is unsupported (1.0 by convention)")


def context_recall(judge: Any, question: str, contexts: list[str], reference: str, *,
                   templates: dict[str, str] | None = None, **options: Any) -> MetricResult:
    """Share of the reference answer's claims that can be attributed to the retrieved contexts (Ragas' context recall).

    The same two steps as :func:`faithfulness`, on the reference instead of the answer (Ragas asks
    for the split and the attributions in one call; two calls keep each verdict aligned with its claim).

    Example:
        >>> context_recall(judge, "Where and when was Einstein born?", ["Einstein was born in Ulm."],
        ...                "Einstein was born in Ulm. He was born in 1879.").score
        0.5
    """
    return _claim_share("context_recall", judge, _text(question, "question"), _text(reference, "reference"),
                        _contexts(contexts), templates, options, "the reference",
                        "the reference makes no factual claim, so nothing is missing (1.0 by convention)")


def answer_relevancy(judge: Any, question: str, answer: str, embedder: Any = None, n: int = 3, *,
                     template: str | None = None, **options: Any) -> MetricResult:
    """How well the answer addresses the question (Ragas' answer relevancy): the judge writes ``n``
    questions the answer answers (seeing the answer only), and the score is their mean cosine
    similarity to the real question, or 0 when the judge calls the answer noncommittal.

    One judge call writes all ``n`` questions (Ragas samples ``n`` calls; at temperature 0 they
    would all be the same question). Negative similarities count as 0.

    Args:
        embedder: anything with ``embed(list[str]) -> list[vector]``; None = the embedded MiniLM
            (``llmkit.rag.embedders.Embedder``), loaded once.
        n: how many questions to generate.
        template: override for the ``questions`` step (see ``QUESTIONS_TEMPLATE``; fields ``{answer}``, ``{n}``).

    Example:
        >>> answer_relevancy(judge, "Where is the Eiffel Tower?", "The Eiffel Tower is in Paris.").score
        0.97...
    """
    _text(question, "question")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} must be a positive integer (how many questions to generate)")
    if not _text(answer, "answer", empty_ok=True).strip():
        return MetricResult("answer_relevancy", 0.0, "the answer is empty", {"questions": [], "noncommittal": True})
    out = _ask(judge, template or QUESTIONS_TEMPLATE, "questions", questions_schema(n), options, answer=answer, n=n)
    q, *generated = (embedder or default_embedder()).embed([question, *out.questions])
    sims = [_cosine(q, g) for g in generated]
    mean = min(1.0, max(0.0, sum(sims) / len(sims)))
    details = {"questions": [{"question": g, "similarity": s} for g, s in zip(out.questions, sims)],
               "noncommittal": bool(out.noncommittal)}
    if out.noncommittal:
        return MetricResult("answer_relevancy", 0.0, "the judge found the answer noncommittal (evasive or vague), so it scores 0",
                            details)
    return MetricResult("answer_relevancy", mean, f"questions the answer answers are {mean:.2f} similar to the question "
                        f"(mean cosine of {n})", details)


def context_precision(judge: Any, question: str, contexts: list[str], reference: str, *,
                      template: str | None = None, **options: Any) -> MetricResult:
    """Whether the useful chunks are ranked first (Ragas' context precision, with reference):
    the judge marks each retrieved chunk useful (v_k = 1) or not for the reference answer, and the
    score is the average precision  sum_k(precision@k * v_k) / (number of useful chunks).

    One judge call per chunk, in rank order. No useful chunk (or no chunk) scores 0.

    Example:
        >>> context_precision(judge, "Capital of France?", ["Berlin is in Germany.", "Paris is France's capital."],
        ...                   "Paris").score      # the useful chunk second: precision@2 = 1/2
        0.5
    """
    question, reference, contexts = _text(question, "question"), _text(reference, "reference"), _contexts(contexts)
    chunks, useful, total = [], 0, 0.0
    for k, ctx in enumerate(contexts, 1):
        v = _ask(judge, template or USEFULNESS_TEMPLATE, "usefulness", Verdict, options,
                 question=question, reference=reference, context=ctx)
        useful += v.verdict
        total += useful / k * v.verdict
        chunks.append({"rank": k, "verdict": v.verdict, "reason": v.reason, "precision_at_k": useful / k})
    if not useful:
        why = "no context was retrieved" if not contexts else f"none of the {len(contexts)} chunks is useful for the reference"
        return MetricResult("context_precision", 0.0, why, {"chunks": chunks})
    score = total / useful
    return MetricResult("context_precision", score, f"{useful} of {len(contexts)} chunks are useful, at ranks "
                        f"{', '.join(str(c['rank']) for c in chunks if c['verdict'])}", {"chunks": chunks})


def noise_sensitivity(judge: Any, question: str, answer: str, contexts: list[str], reference: str, *,
                      mode: Literal["relevant", "irrelevant"] = "relevant", templates: dict[str, str] | None = None,
                      **options: Any) -> MetricResult:
    """Share of the answer's claims that are incorrect yet drawn from the retrieved contexts
    (Ragas' noise sensitivity; lower is better).

    A claim of the answer is *incorrect* when it cannot be inferred from the reference. A context is
    *relevant* when it supports at least one claim of the reference. ``mode="relevant"`` (Ragas'
    default) counts incorrect claims supported by a relevant context (the system misread good
    evidence); ``mode="irrelevant"`` counts incorrect claims supported only by irrelevant contexts
    (the system was misled by noise).

    Judge calls, in Ragas' order: claims(reference), claims(answer); for each context,
    verdicts(reference claims | context) and verdicts(answer claims | context); then
    verdicts(answer claims | reference). An answer with no claims scores 0.0.

    Example:
        >>> r = noise_sensitivity(judge, q, answer, contexts, reference)
        >>> r.score, [c["claim"] for c in r.details["claims"] if c["counted"]]
    """
    if mode not in ("relevant", "irrelevant"):
        raise ConfigError(f"mode={mode!r} must be 'relevant' or 'irrelevant'")
    question, reference = _text(question, "question"), _text(reference, "reference")
    answer, contexts = _text(answer, "answer", empty_ok=True), _contexts(contexts)
    t = _templates(templates, claims=CLAIMS_TEMPLATE, verdicts=VERDICTS_TEMPLATE)
    ref_claims = _claims(judge, t["claims"], question, reference, options)
    claims = _claims(judge, t["claims"], question, answer, options)
    if not claims:
        return MetricResult("noise_sensitivity", 0.0, "the answer makes no factual claim, so none is incorrect",
                            {"mode": mode, "claims": [], "reference_claims": ref_claims, "relevant_contexts": []})
    ref_by_ctx, ans_by_ctx = [], []
    for ctx in contexts:
        ref_by_ctx.append(_verdicts(judge, t["verdicts"], ref_claims, ctx, options))
        ans_by_ctx.append(_verdicts(judge, t["verdicts"], claims, ctx, options))
    correct = _verdicts(judge, t["verdicts"], claims, reference, options)
    relevant = [i for i, vs in enumerate(ref_by_ctx) if any(v["verdict"] for v in vs)]
    rows = []
    for j, c in enumerate(correct):
        by_relevant = [i + 1 for i in relevant if ans_by_ctx[i][j]["verdict"]]
        by_irrelevant = [i + 1 for i in range(len(contexts)) if i not in relevant and ans_by_ctx[i][j]["verdict"]]
        incorrect = not c["verdict"]
        counted = incorrect and (bool(by_relevant) if mode == "relevant" else bool(by_irrelevant) and not by_relevant)
        rows.append({"claim": c["claim"], "correct": not incorrect, "reason": c["reason"], "counted": counted,
                     "relevant_contexts": by_relevant, "irrelevant_contexts": by_irrelevant})
    n = sum(r["counted"] for r in rows)
    return MetricResult("noise_sensitivity", n / len(rows),
                        f"{n} of {len(rows)} claims in the answer are incorrect and supported by {mode} contexts",
                        {"mode": mode, "claims": rows, "reference_claims": ref_claims,
                         "relevant_contexts": [i + 1 for i in relevant]})  # contexts numbered from 1, as in the prompts


@functools.lru_cache(maxsize=1)
def default_embedder() -> Any:
    """The embedded all-MiniLM-L6-v2, loaded on first use and kept."""
    from ..rag.embedders import Embedder

    return Embedder()


def _cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


# --- a batch of samples -----------------------------------------------------------------------------

#: name -> (function, the sample keys it reads, the steps it takes templates for)
METRICS: dict[str, tuple[Callable[..., MetricResult], tuple[str, ...], tuple[str, ...]]] = {
    "faithfulness": (faithfulness, ("question", "answer", "contexts"), ("claims", "verdicts")),
    "answer_relevancy": (answer_relevancy, ("question", "answer"), ("questions",)),
    "context_precision": (context_precision, ("question", "contexts", "reference"), ("usefulness",)),
    "context_recall": (context_recall, ("question", "contexts", "reference"), ("claims", "verdicts")),
    "noise_sensitivity": (noise_sensitivity, ("question", "answer", "contexts", "reference"), ("claims", "verdicts")),
}
DEFAULT_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")  # Ragas' default set


def evaluate_rag(judge: Any, samples: list[dict[str, Any]], metrics: Iterable[str] = DEFAULT_METRICS, *,
                 embedder: Any = None, templates: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Judged RAG metrics over samples: every sample is checked before the first judge call.

    Args:
        samples: dicts with ``question``, ``answer``, ``contexts`` (list of str, best first) and
            ``reference``, as far as the chosen metrics need them.
        metrics: names from ``METRICS``.
        embedder: for answer_relevancy (None = the embedded MiniLM).
        templates: overrides by step name (``claims``, ``verdicts``, ``questions``, ``usefulness``).
        **options: passed to ``judge.json`` (``max_tokens``, ``temperature``...).

    Returns:
        ``{"samples": [{metric: MetricResult}], "means": {metric: mean score}}``.

    Example:
        >>> out = evaluate_rag(judge, [{"question": "...", "answer": "...", "contexts": ["..."], "reference": "..."}])
        >>> out["means"]["faithfulness"], out["samples"][0]["faithfulness"].details["claims"]
    """
    names = list(metrics)
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"no RAG metric {name!r}; accepted: {', '.join(METRICS)}")
    if not names:
        raise ConfigError(f"evaluate_rag needs at least one metric from: {', '.join(METRICS)}")
    unknown = sorted(set(templates or {}) - set(STEPS))
    if unknown:
        raise ConfigError(f"no step named {', '.join(map(repr, unknown))}; steps: {', '.join(STEPS)}")
    samples = list(samples)
    if not samples:
        raise ConfigError("evaluate_rag needs at least one sample")
    for i, s in enumerate(samples):
        for name in names:
            missing = [k for k in METRICS[name][1] if not isinstance(s, dict) or k not in s]
            if missing:
                raise ConfigError(f"sample {i} lacks {', '.join(missing)}, which {name} needs "
                                  f"(a sample is a dict with question, answer, contexts, reference)")
    rows = []
    for s in samples:
        row = {}
        for name in names:
            fn, keys, steps = METRICS[name]
            kw = {k: s[k] for k in keys}
            own = {k: v for k, v in (templates or {}).items() if k in steps}
            if name == "answer_relevancy":
                kw.update(embedder=embedder, template=own.get("questions"))
            elif name == "context_precision":
                kw.update(template=own.get("usefulness"))
            else:
                kw.update(templates=own)
            row[name] = fn(judge, **kw, **options)
        rows.append(row)
    return {"samples": rows, "means": {name: sum(r[name].score for r in rows) / len(rows) for name in names}}
