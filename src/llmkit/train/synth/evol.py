"""Evol-Instruct (WizardLM; Xu et al., 2023): instructions rewritten harder (in depth) or rarer (in
breadth), round after round, with the paper's checks for failed evolutions.

Example:
    >>> import llmkit as lk
    >>> from llmkit.train.synth import evol_instruct
    >>> rows = evol_instruct(lk.model(), ["Explain recursion."], rounds=2)
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

from ...core.errors import ConfigError
from ...prompts.templates import render
from .common import (
    RESPONSE_TEMPLATE,
    _answer_problem,
    _Calls,
    _model_name,
    _options,
    _progress,
)
from .config import EvolConfig
from .io import Rows, _instructions, chat_row
from .text import _content, words

EVOL_DEPTH_TEMPLATE = """\
I want you to act as a Prompt Rewriter.
Your objective is to rewrite a given prompt into a more complex version, to make it a bit harder for famous AI \
systems (e.g. ChatGPT and GPT-4) to handle. The rewritten prompt must stay reasonable, and humans must be able to \
understand and answer it.
Keep the non-text parts of #The Given Prompt#, such as tables and code, and keep its input.
Complicate the given prompt with this method:
{{ method }}
Do not make #The Rewritten Prompt# verbose: it may add only 10 to 20 words to #The Given Prompt#.
'#The Given Prompt#', '#The Rewritten Prompt#', 'given prompt' and 'rewritten prompt' must not appear in \
#The Rewritten Prompt#.

#The Given Prompt#:
{{ instruction }}

#The Rewritten Prompt#:"""

#: The in-depth operations' methods (Xu et al., 2023, appendix), filled into ``EVOL_DEPTH_TEMPLATE``.
EVOL_METHODS = {
    "constraints": "Add one more constraint or requirement to #The Given Prompt#.",
    "deepen": "If #The Given Prompt# asks about certain issues, increase the depth and breadth of the inquiry.",
    "concretize": "Replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking steps, rewrite it to "
                 "explicitly ask for multiple-step reasoning.",
}

EVOL_BREADTH_TEMPLATE = """\
I want you to act as a Prompt Creator.
Your goal is to draw inspiration from #The Given Prompt# to create a brand new prompt.
The new prompt must belong to the same domain as #The Given Prompt# but be more rare.
The length and complexity of #The Created Prompt# should be similar to those of #The Given Prompt#.
#The Created Prompt# must be reasonable, and humans must be able to understand and answer it.
'#The Given Prompt#', '#The Created Prompt#', 'given prompt' and 'created prompt' must not appear in \
#The Created Prompt#.

#The Given Prompt#:
{{ instruction }}

#The Created Prompt#:"""

#: The information-gain check (``equality_check``): answered with one of "Equal" / "Not Equal".
EVOL_EQUAL_TEMPLATE = """\
Here are two instructions to an AI assistant. Are they equal to each other, meeting these requirements:
1. They have the same constraints and requirements.
2. They have the same depth and breadth of inquiry.

The first prompt: {{ original }}

The second prompt: {{ evolved }}

Your judgement (answer only Equal or Not Equal):"""

_REFUSAL = re.compile(r"\b(sorry|apologi[sz]e|i can(?:no|')t|i am (?:not able|unable)|i'm (?:not able|unable)|"
                      r"as an ai)\b", re.IGNORECASE)
_LEAKS = ("given prompt", "rewritten prompt", "created prompt")  # Evol-Instruct's template words (§3.3 rule 4)
_EVOL_LABEL = re.compile(r"^[^\n]*?#?\s*(?:the\s+)?(?:rewritten|created|evolved|new)\s+prompt\s*#?\s*:[ \t]*",
                         re.IGNORECASE | re.MULTILINE)


def clean_evolved(text: str) -> str:
    """The evolved instruction in a reply: what follows the last ``#Rewritten Prompt#:``-style label
    (chatter before it dropped), without wrapping quotes or bold markers."""
    found = list(_EVOL_LABEL.finditer(text))
    text = text[found[-1].end():] if found else text
    text = text.strip().strip("*").strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def evolution_failure(original: str, evolved: str, response: str | None = None) -> str | None:
    """Why an evolution failed (Xu et al., 2023, §3.3), or None: ``empty``; ``copied_prompt`` (it
    copies the rewriting prompt's words, e.g. "#Rewritten Prompt#"); ``unchanged`` (the same words
    as the original); with the response: ``empty_response``, ``refused`` ("sorry", "I cannot" … in
    an answer under 80 words) and ``stop_words_only`` (punctuation and stop words).

    Example:
        >>> evolution_failure("Explain DNS.", "Explain DNS!")
        'unchanged'
    """
    if not evolved.strip():
        return "empty"
    if any(leak in evolved.lower() for leak in _LEAKS):
        return "copied_prompt"
    if words(evolved) == words(original):
        return "unchanged"
    if response is None:
        return None
    ws = words(response)
    if not response.strip():
        return "empty_response"
    if _REFUSAL.search(response) and len(response.split()) < 80:
        return "refused"
    if not _content(ws):
        return "stop_words_only"
    return None


def evol_instruct(model: Any, instructions: Iterable[Any], rounds: int | None = None, *,
                  config: EvolConfig | None = None, depth_template: str = EVOL_DEPTH_TEMPLATE,
                  methods: dict[str, str] | None = None, breadth_template: str = EVOL_BREADTH_TEMPLATE,
                  equal_template: str = EVOL_EQUAL_TEMPLATE, response_template: str = RESPONSE_TEMPLATE,
                  progress: bool | None = None, **options: Any) -> Rows:
    """Evol-Instruct (WizardLM; Xu et al., 2023): each round rewrites every instruction with an
    operation drawn from ``config.operations`` — in depth (add constraints, deepen, concretize, more
    reasoning steps) or in breadth (a new, rarer task of the same domain) — answers it, and drops
    failed evolutions (:func:`evolution_failure`); an instruction whose evolution failed goes into
    the next round as it was.

    Args:
        model: the llmkit model that rewrites and answers.
        instructions: the starting instructions (strings, chat rows or records).
        rounds: evolution rounds (``config.rounds`` otherwise).
        depth_template, methods: the in-depth prompt and its ``method`` text per operation (``EVOL_METHODS``).
        breadth_template: the in-breadth prompt; ``equal_template``: the equality check's.
        **options: override fields of :class:`EvolConfig`.

    Returns:
        :class:`Rows` with ``meta`` ``operation``, ``round``, ``parent`` and ``source`` (the starting instruction).

    Example:
        >>> rows = evol_instruct(lk.model(), ["Explain recursion."], rounds=2, operations=["constraints", "reasoning"])
        >>> [r["meta"]["operation"] for r in rows]
    """
    cfg = _options(EvolConfig, config, {"rounds": rounds}, options)
    methods = EVOL_METHODS if methods is None else methods
    missing = [op for op in cfg.operations if op != "breadth" and op not in methods]
    if missing:
        raise ConfigError(f"methods has no text for the operation {missing[0]!r}; it has {', '.join(methods)}")
    current = _instructions(instructions, "instructions")
    roots = list(current)
    rng, calls, out = random.Random(cfg.seed), _Calls(model, cfg.seed), Rows()
    with _progress(len(current) * cfg.rounds, "evol-instruct", progress) as advance:
        for r in range(1, cfg.rounds + 1):
            for i, instruction in enumerate(current):
                if cfg.n is not None and len(out) >= cfg.n:
                    return out
                op = rng.choice(cfg.operations)
                prompt = (render(breadth_template, instruction=instruction) if op == "breadth"
                          else render(depth_template, instruction=instruction, method=methods[op]))
                evolved = clean_evolved(model.chat(prompt, **calls(cfg.temperature, cfg.max_tokens)).text)
                why = evolution_failure(instruction, evolved)
                if why is None and cfg.equality_check:
                    verdict = model.choose(render(equal_template, original=instruction, evolved=evolved),
                                           ["Equal", "Not Equal"], **calls(0.0, 8))
                    why = "judged_equal" if verdict == "Equal" else None
                if why is None:
                    reply = model.chat(render(response_template, instruction=evolved),
                                       **calls(cfg.answer_temperature, cfg.max_tokens))
                    why = evolution_failure(instruction, evolved, reply.text) or _answer_problem(reply, cfg.keep_truncated)
                advance(1)
                if why:
                    out.rejected[why] += 1
                    continue
                out.append(chat_row(evolved, reply.text.strip(), method="evol_instruct", source=roots[i],
                                    operation=op, round=r, parent=instruction, model=_model_name(model)))
                current[i] = evolved
    return out
