"""Chain-of-thought prompting, answer extraction, self-consistency, least-to-most and step-back.

- Zero-shot CoT (Kojima et al. 2022): the question, then :data:`COT_TRIGGER`.
- Few-shot CoT (Wei et al. 2022): demonstrations whose answers carry a rationale
  (``Example(input, output, rationale)``, formatted by ``fewshot.RATIONALE_TEMPLATE``).
- Answer extraction: :func:`extract_answer` reads "The answer is X" / "Answer: X" /
  "Final Answer: X" / ``\\boxed{X}`` (:data:`ANSWER_PATTERNS`), :func:`extract_number` the last
  number; or a second call, constrained to choices or a regex (:func:`answer_by_call`).
- Self-consistency (Wang et al. 2022): ``n`` samples at temperature > 0 with seeds
  ``seed, seed + 1, …``; answers normalised (:func:`normalize_answer`) and majority-voted.
- Least-to-most (Zhou et al. 2022) and step-back (Zheng et al. 2023): visible templates and a
  helper each.

Every template is a module constant; print it, or pass your own (``template=...``).

Example:
    >>> r = chain_of_thought(m, "A farmer has 3 pens of 4 sheep. How many sheep?", number=True, temperature=0)
    >>> r.answer, r.reasoning[:40]
    ('12', 'There are 3 pens with 4 sheep each, so ')
    >>> v = self_consistency(m, "…", n=5, temperature=0.7, number=True)
    >>> v.answer, v.agreement, v.votes
    ('12', 0.8, {'12': 4, '11': 1})
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Sequence

from ..core.errors import ConfigError
from ..core.types import Completion, Message

#: Zero-shot chain-of-thought trigger (Kojima et al. 2022).
COT_TRIGGER = "Let's think step by step."
#: The zero-shot CoT user message.
COT_TEMPLATE = "{question}\n\n{trigger}"
#: A final line that makes the answer easy to find; appended to the user message when ``ask_format=True``.
ANSWER_FORMAT = 'End with a line of the form "The answer is X."'
#: The follow-up turn of :func:`answer_by_call` (Kojima's second stage, in chat form).
ANSWER_EXTRACTION_TEMPLATE = "Therefore, what is the final answer? Reply with the answer only."
#: Where the answer sits in a reasoning text; the first pattern that matches wins, its last match is taken.
ANSWER_PATTERNS = (
    r"\\boxed\{(?P<a>[^{}]*)\}",
    r"final\s+answer\s*(?:is|:)\s*:?\s*(?P<a>[^\n]+)",
    r"the\s+(?:final\s+|correct\s+)?answer\s+is\s*:?\s*(?P<a>[^\n]+)",
    r"\banswer\s*:\s*(?P<a>[^\n]+)",
)
#: A number as written in answers: optional sign and currency, thousands commas, decimals.
NUMBER_PATTERN = r"(?<![\w.])[-+−]?[$€£]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])"
#: The regex a second call's answer must match when ``number=True``.
NUMBER_ANSWER_REGEX = r"-?\d+(\.\d+)?"

#: Least-to-most, stage 1: decompose.
LEAST_TO_MOST_DECOMPOSE = (
    "Break the problem below into simpler sub-questions that build on each other; the last one is "
    "the problem itself. Write one sub-question per line, numbered 1., 2., 3., and nothing else.\n\n"
    "Problem: {question}")
#: Least-to-most, stage 2: solve each sub-question with the earlier answers in view.
LEAST_TO_MOST_SOLVE = "Problem: {question}\n\n{solved}Answer this sub-question briefly: {subquestion}"
#: One solved sub-question inside :data:`LEAST_TO_MOST_SOLVE`'s ``{solved}``.
LEAST_TO_MOST_SOLVED = "Q: {subquestion}\nA: {answer}\n\n"

#: Step-back, stage 1: ask the more general question behind the question.
STEP_BACK_TEMPLATE = (
    "Step back from the question below: write the more general question about the principles or "
    "concepts it depends on, which is easier to answer. Reply with that question only.\n\n"
    "Question: {question}")
#: Step-back, stage 3: answer the original question with the step-back answer as background.
STEP_BACK_ANSWER_TEMPLATE = (
    "Background: {step_back_question}\n{principles}\n\n"
    "Using the background above, answer the question.\nQuestion: {question}")


# --- answers ---------------------------------------------------------------------------------
def _clean(answer: str) -> str:
    answer = re.split(r"\.\s", answer.strip(), maxsplit=1)[0]  # the sentence's end ("5.5" keeps its point)
    return answer.strip().strip("*_`\"'").rstrip(".").strip()


def extract_number(text: str) -> str | None:
    """The last number in ``text``, normalised ("1,000" → "1000", "5.0" → "5", "$3" → "3"), or None."""
    found = re.findall(NUMBER_PATTERN, text or "")
    return _as_number(found[-1]) if found else None


def extract_answer(text: str, *, number: bool = False, patterns: Sequence[str] = ANSWER_PATTERNS) -> str | None:
    """The final answer in a reasoning text, or None.

    The first of ``patterns`` that matches gives the answer (its last match), cut at the end of
    its sentence. With ``number=True`` the answer is the number in it — or, when no pattern
    matches, the last number in the whole text (as Wang et al. do for arithmetic).

    Example:
        >>> extract_answer("3 pens of 4 is 12. The answer is 12 sheep.", number=True)
        '12'
        >>> extract_answer("Paris is the capital.\\nAnswer: Paris")
        'Paris'
    """
    text = text or ""
    for p in patterns:
        found = list(re.finditer(f"(?=(?:{p}))", text, re.I))  # a lookahead, so one match cannot hide a later one
        if found:
            answer = _clean(found[-1].group("a"))
            if not number:
                return answer or None
            return extract_number(answer) if extract_number(answer) is not None else extract_number(text)
    return extract_number(text) if number else None


def _as_number(s: str) -> str | None:
    """A canonical decimal string for a number as written, or None when ``s`` is not one number."""
    t = s.strip().replace("−", "-").rstrip(".").strip()
    t = re.sub(r"^([-+]?)[$€£]\s*", r"\1", t).rstrip("%").strip()
    if not re.fullmatch(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?", t) or not re.search(r"\d", t):
        return None
    try:
        d = Decimal(t.replace(",", ""))
    except InvalidOperation:
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def normalize_answer(answer: str | None) -> str:
    """The form answers are compared in: numbers canonical ("1,000" → "1000", "5.0" → "5",
    "$5" → "5", "50%" → "50"); other text lower-cased, punctuation dropped, whitespace collapsed.

    Example:
        >>> [normalize_answer(a) for a in ["1,000", "1000.0", " Paris. ", "PARIS!"]]
        ['1000', '1000', 'paris', 'paris']
    """
    if answer is None:
        return ""
    text = unicodedata.normalize("NFKC", str(answer)).strip()
    n = _as_number(text)
    if n is not None:
        return n
    # punctuation is dropped, not spaced (SQuAD's normalisation): "U.S.A." and "USA" agree
    text = "".join("" if unicodedata.category(ch).startswith("P") or ch in "$`^|~<>=+" else ch for ch in text.lower())
    return " ".join(text.split())


# --- chain of thought ------------------------------------------------------------------------
@dataclass
class CoTResult:
    """One chain-of-thought answer: the extracted ``answer`` (None if none was found), the
    ``reasoning`` text, and the ``completion`` it came from."""

    answer: str | None
    reasoning: str
    completion: Completion | None = None


def cot_messages(question: str, *, examples: Any = None, system: str | None = None, trigger: str | None = COT_TRIGGER,
                 template: str = COT_TEMPLATE, ask_format: bool = False) -> list[Message]:
    """The chain-of-thought prompt for ``question``.

    Args:
        examples: demonstrations with rationales (Examples, dicts, tuples) or a ``FewShot`` that
            selects them for the question; with examples, no trigger is added (few-shot CoT).
        trigger: the zero-shot trigger (None: none).
        template: the zero-shot user message (``{question}``, ``{trigger}``).
        ask_format: append :data:`ANSWER_FORMAT` so the answer is easy to extract.
    """
    from .fewshot import FewShot, example_turns

    head = [Message(role="system", content=system)] if system else []
    tail = f"\n\n{ANSWER_FORMAT}" if ask_format else ""
    if isinstance(examples, FewShot):  # selected for this question, in the selector's own style
        msgs = examples.messages(question, system=system)
        return msgs[:-1] + [Message(role="user", content=msgs[-1].content + tail)]
    if examples is not None:
        return head + example_turns(list(examples)) + [Message(role="user", content=question + tail)]
    text = template.format(question=question, trigger=trigger or "").strip()
    return head + [Message(role="user", content=text + tail)]


def answer_by_call(model: Any, messages: list[Message], reasoning: str, *, choices: Sequence[str] | None = None,
                   pattern: str | None = None, number: bool = False, template: str = ANSWER_EXTRACTION_TEMPLATE,
                   **sampling: Any) -> str:
    """Ask for the final answer in a second call, after the reasoning: constrained to one of
    ``choices``, to the regex ``pattern``, or to a number (``number=True``); free text otherwise.

    Example:
        >>> answer_by_call(m, msgs, reply.text, choices=["yes", "no"], temperature=0)
        'yes'
    """
    from ..structured import Choice, Regex

    follow = list(messages) + [Message(role="assistant", content=reasoning), Message(role="user", content=template)]
    constraint = Choice(list(choices)) if choices else Regex(pattern) if pattern else \
        Regex(NUMBER_ANSWER_REGEX) if number else None
    c = model.chat(follow, constraint=constraint, **sampling)
    out = c.parsed if constraint is not None and c.parsed is not None else c.text.strip()
    return (_as_number(out) or out) if number else out


def chain_of_thought(model: Any, question: str | list[Message], *, examples: Any = None, system: str | None = None,
                     number: bool = False, extract: str | Callable[[str], str | None] = "regex",
                     choices: Sequence[str] | None = None, pattern: str | None = None,
                     trigger: str | None = COT_TRIGGER, template: str = COT_TEMPLATE, ask_format: bool = False,
                     **sampling: Any) -> CoTResult:
    """Reason, then extract the answer.

    Args:
        question: the question (built into :func:`cot_messages`), or ready messages sent as they are.
        extract: ``"regex"`` (:func:`extract_answer`), ``"call"`` (:func:`answer_by_call`, using
            ``choices``/``pattern``/``number``), or a function ``reasoning -> answer``.
        **sampling: sampling fields for the calls.

    Example:
        >>> chain_of_thought(m, "Is 17 prime?", extract="call", choices=["yes", "no"], temperature=0).answer
    """
    msgs = list(question) if isinstance(question, list) else \
        cot_messages(question, examples=examples, system=system, trigger=trigger, template=template,
                     ask_format=ask_format)
    reply = model.chat(msgs, **sampling)
    if callable(extract):
        answer = extract(reply.text)
    elif extract == "regex":
        answer = extract_answer(reply.text, number=number)
    elif extract == "call":
        answer = answer_by_call(model, msgs, reply.text, choices=choices, pattern=pattern, number=number,
                                **{k: v for k, v in sampling.items() if k != "stop"})
    else:
        raise ConfigError(f"extract={extract!r} must be 'regex', 'call' or a function of the reasoning text")
    return CoTResult(answer=answer, reasoning=reply.text, completion=reply)


# --- self-consistency ------------------------------------------------------------------------
@dataclass
class Vote:
    """The outcome of a majority vote.

    Attributes:
        answer: the winning answer as first written (None when no sample had an answer).
        normalized: the winning answer's normalised form (the key of ``votes``).
        count: votes for it.
        agreement: ``count / number of samples`` (samples with no answer count against it).
        votes: normalised answer → votes, most votes first (ties: first seen first).
        answers: every sample's extracted answer (None where none was found), in order.
        samples: the :class:`CoTResult` of each sample (self-consistency only).
    """

    answer: str | None
    normalized: str
    count: int
    agreement: float
    votes: dict[str, int]
    answers: list[str | None]
    samples: list[CoTResult] = field(default_factory=list)


def majority_vote(answers: Sequence[str | None], normalize: Callable[[str], str] = normalize_answer) -> Vote:
    """Vote over answers compared after ``normalize``; empty and None answers do not vote. A tie
    goes to the answer seen first, so the result is the same on every run.

    Example:
        >>> v = majority_vote(["1,000", "999", "1000.0", None])
        >>> v.answer, v.normalized, v.count, v.agreement
        ('1,000', '1000', 2, 0.5)
    """
    answers = list(answers)
    keys = [normalize(a) if a is not None else "" for a in answers]
    counts = Counter(k for k in keys if k)
    first = {}
    for i, k in enumerate(keys):
        if k:
            first.setdefault(k, i)
    order = sorted(counts, key=lambda k: (-counts[k], first[k]))
    if not order:
        return Vote(None, "", 0, 0.0, {}, answers)
    win = order[0]
    return Vote(answer=answers[first[win]].strip(), normalized=win, count=counts[win],
                agreement=counts[win] / len(answers), votes={k: counts[k] for k in order}, answers=answers)


def self_consistency(model: Any, question: str | list[Message], *, n: int = 5, temperature: float = 0.7,
                     seed: int | None = 0, examples: Any = None, system: str | None = None, number: bool = False,
                     extract: str | Callable[[str], str | None] = "regex",
                     normalize: Callable[[str], str] = normalize_answer, trigger: str | None = COT_TRIGGER,
                     template: str = COT_TEMPLATE, ask_format: bool = False, **sampling: Any) -> Vote:
    """Sample ``n`` chains of thought and majority-vote their answers (Wang et al. 2022).

    Args:
        n: samples.
        temperature: must be > 0, or every sample would be the same.
        seed: sample ``i`` uses ``seed + i`` (reproducible where the backend honours seeds);
            None sends no seed (for backends without one).
        number, extract, examples, system, trigger, template, ask_format: as in :func:`chain_of_thought`.
        normalize: how answers are compared (default :func:`normalize_answer`).
        **sampling: more sampling fields (``max_tokens``, ``top_p`` …).

    Returns:
        a :class:`Vote`, its ``samples`` holding each chain of thought.

    Example:
        >>> v = self_consistency(m, "If I have 3 apples and eat one, how many are left?", n=5, number=True)
        >>> v.answer, v.agreement
        ('2', 0.8)
    """
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} must be a whole number >= 1")
    if temperature is None or temperature <= 0:
        raise ConfigError(f"temperature={temperature!r} must be > 0 for self-consistency (greedy samples are all the same)")
    samples = []
    for i in range(n):
        seeded = {"seed": seed + i} if seed is not None else {}
        samples.append(chain_of_thought(model, question, examples=examples, system=system, number=number,
                                        extract=extract, trigger=trigger, template=template, ask_format=ask_format,
                                        temperature=temperature, **seeded, **sampling))
    vote = majority_vote([s.answer for s in samples], normalize)
    vote.samples = samples
    return vote


# --- least-to-most and step-back -------------------------------------------------------------
def parse_subquestions(text: str) -> list[str]:
    """Sub-questions from a numbered or bulleted list (one per line; unmarked lines ending in "?" too).

    Example:
        >>> parse_subquestions("1. How many apples?\\n2. How many are left?")
        ['How many apples?', 'How many are left?']
    """
    out = []
    for line in (text or "").splitlines():
        m = re.match(r"\s*(?:\d+[.)]|[-*•]|Q\d*:|Sub-?question\s*\d*:)\s*(?P<q>.+)", line, re.I)
        q = m.group("q").strip() if m else line.strip() if line.strip().endswith("?") else ""
        if q:
            out.append(q)
    return out


@dataclass
class LeastToMost:
    """Least-to-most: the ``subquestions`` in order, each one's ``answers``, the final ``answer``."""

    subquestions: list[str]
    answers: list[str]
    answer: str


def least_to_most(model: Any, question: str, *, max_subquestions: int = 5, decompose_template: str = LEAST_TO_MOST_DECOMPOSE,
                  solve_template: str = LEAST_TO_MOST_SOLVE, solved_template: str = LEAST_TO_MOST_SOLVED,
                  **sampling: Any) -> LeastToMost:
    """Decompose ``question`` into sub-questions, then answer them in order, each with the earlier
    answers in the prompt; the last sub-question is the question itself (added when missing).

    Example:
        >>> r = least_to_most(m, "Amy climbs a 5 m slide in 2 min and slides down in 1 min. How many trips in 15 min?")
        >>> r.subquestions, r.answer
    """
    plan = model.chat([Message(role="user", content=decompose_template.format(question=question))], **sampling)
    subs = parse_subquestions(plan.text)[:max(0, max_subquestions - 1)]
    if not subs or normalize_answer(subs[-1]) != normalize_answer(question):
        subs.append(question)
    answers: list[str] = []
    for sq in subs:
        solved = "".join(solved_template.format(subquestion=q, answer=a) for q, a in zip(subs, answers))
        text = solve_template.format(question=question, solved=solved, subquestion=sq)
        answers.append(model.chat([Message(role="user", content=text)], **sampling).text.strip())
    return LeastToMost(subquestions=subs, answers=answers, answer=extract_answer(answers[-1]) or answers[-1])


@dataclass
class StepBack:
    """Step-back prompting: the ``step_back_question``, its answer (``principles``), the final ``answer``."""

    step_back_question: str
    principles: str
    answer: str


def step_back(model: Any, question: str, *, template: str = STEP_BACK_TEMPLATE,
              answer_template: str = STEP_BACK_ANSWER_TEMPLATE, **sampling: Any) -> StepBack:
    """Ask the more general question first, answer it, then answer ``question`` with that as background.

    Example:
        >>> r = step_back(m, "What happens to the pressure of a gas if its temperature doubles at fixed volume?")
        >>> r.step_back_question   # e.g. 'What is the ideal gas law?'
    """
    sb = model.chat([Message(role="user", content=template.format(question=question))], **sampling).text.strip()
    principles = model.chat([Message(role="user", content=sb)], **sampling).text.strip()
    final = answer_template.format(step_back_question=sb, principles=principles, question=question)
    answer = model.chat([Message(role="user", content=final)], **sampling).text.strip()
    return StepBack(step_back_question=sb, principles=principles, answer=answer)


__all__ = ["COT_TRIGGER", "COT_TEMPLATE", "ANSWER_FORMAT", "ANSWER_EXTRACTION_TEMPLATE", "ANSWER_PATTERNS",
           "NUMBER_PATTERN", "NUMBER_ANSWER_REGEX", "LEAST_TO_MOST_DECOMPOSE", "LEAST_TO_MOST_SOLVE",
           "LEAST_TO_MOST_SOLVED", "STEP_BACK_TEMPLATE", "STEP_BACK_ANSWER_TEMPLATE",
           "CoTResult", "Vote", "LeastToMost", "StepBack", "cot_messages", "chain_of_thought", "answer_by_call",
           "extract_answer", "extract_number", "normalize_answer", "majority_vote", "self_consistency",
           "parse_subquestions", "least_to_most", "step_back"]
