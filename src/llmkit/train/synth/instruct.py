"""Self-Instruct (Wang et al., 2022): new tasks written from a few in-context seed tasks, filtered by
the paper's heuristics and ROUGE-L against the pool, then answered.

Example:
    >>> import llmkit as lk
    >>> from llmkit.train.synth import self_instruct
    >>> rows = self_instruct(lk.model(), ["Write a haiku about rain.", "List three uses of vinegar."], n=50)
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

from ...prompts.templates import render
from .common import (
    RESPONSE_TEMPLATE,
    _answer_problem,
    _Calls,
    _model_name,
    _options,
    _progress,
)
from .config import SelfInstructConfig
from .io import Rows, _instructions, chat_row
from .text import rouge_l, words

SELF_INSTRUCT_TEMPLATE = """\
Come up with a series of tasks:
{% for task in tasks %}
Task {{ loop.index }}: {{ task }}
{% endfor %}

Write {{ count }} new tasks that differ from these in topic and kind, numbered from Task {{ tasks|length + 1 }}, \
one per line as "Task N: <instruction>". Write only the tasks; do not answer them."""

_TASK = re.compile(r"(?:^[ \t>*#-]*\**[ \t]*task[ \t]*\d+[ \t]*\**[ \t]*[:.)][ \t]*\**|(?<=\s)Task \d+:)", re.IGNORECASE | re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s+")
_CHATTER = re.compile(r"^(?:sure|certainly|of course|okay|ok|here (?:are|is)|here's|great)\b", re.IGNORECASE)
_ANSWERED = re.compile(r"^\s*\**(?:output|answer|response|solution)\s*\**\s*:", re.IGNORECASE | re.MULTILINE)


def parse_instructions(text: str) -> list[str]:
    """The tasks in a model's reply: the parts after each ``Task N:`` (whatever comes before the first
    is chatter), else one per line with numbering and bullets removed; lines that introduce
    (``Here are …:``) and self-answers (``Output: …``) are dropped.

    Example:
        >>> parse_instructions("Sure! Here you go:\\nTask 9: **Name a prime.**\\nOutput: 7\\nTask 10: Sort [3, 1].")
        ['Name a prime.', 'Sort [3, 1].']
    """
    parts = _TASK.split(text)
    items = parts[1:] if len(parts) > 1 else [_BULLET.sub("", line) for line in text.splitlines()]
    out = []
    for item in items:
        item = _ANSWERED.split(item, maxsplit=1)[0]  # the model answered its own task: keep the task
        item = "\n".join(line.strip() for line in item.strip().splitlines()).strip()
        item = re.sub(r"^\**\s*instruction\s*\**\s*:\s*", "", item, flags=re.IGNORECASE).strip().strip("*").strip()
        if len(item) > 1 and item[0] == item[-1] and item[0] in "\"'`":
            item = item[1:-1].strip()
        if not item or item.endswith(":") or _CHATTER.match(item):
            continue
        out.append(item)
    return out


def instruction_problem(instruction: str, config: SelfInstructConfig | None = None) -> str | None:
    """Why Self-Instruct's heuristics drop ``instruction`` (§2.3 of the paper), or None to keep it:
    ``too_short``, ``too_long``, ``blocked_word``, ``starts_with_punctuation``, ``not_english``."""
    cfg = config or SelfInstructConfig()
    ws = words(instruction)
    if len(ws) < cfg.min_words:
        return "too_short"
    if len(ws) > cfg.max_words:
        return "too_long"
    text = " ".join(ws)
    if any(re.search(rf"\b{re.escape(' '.join(words(b)))}\b", text) for b in cfg.blocked_words if words(b)):
        return "blocked_word"
    first = instruction.lstrip()[0]
    if not first.isalnum():
        return "starts_with_punctuation"
    if not first.isascii():
        return "not_english"
    return None


def self_instruct(model: Any, seeds: Iterable[Any], n: int | None = None, *, config: SelfInstructConfig | None = None,
                  template: str = SELF_INSTRUCT_TEMPLATE, response_template: str = RESPONSE_TEMPLATE,
                  progress: bool | None = None, **options: Any) -> Rows:
    """Self-Instruct (Wang et al., 2022): show the model ``num_seeds`` tasks from the pool (seed tasks,
    and ``num_machine`` tasks it wrote earlier), ask for new ones, keep those that pass the paper's
    filters and are not near-duplicates of the pool (ROUGE-L < ``rouge_threshold``), then answer each.

    Args:
        model: the llmkit model that writes tasks and answers.
        seeds: seed instructions: strings, chat rows or ``{"instruction": ...}`` records.
        n: rows to make (``config.n`` otherwise).
        config: a :class:`SelfInstructConfig`; ``**options`` override its fields (``temperature=1.0``).
        template: the task-writing prompt (``tasks``, ``count``); ``response_template`` asks for an answer.
        progress: show a bar; None = only when stderr is a terminal.

    Returns:
        :class:`Rows`; fewer than ``n`` when ``patience`` calls in a row added nothing.

    Example:
        >>> rows = self_instruct(lk.model(), ["Write a haiku about rain.", "Sort these numbers: 3, 1, 2."], n=10)
        >>> rows[0]["messages"][0]["content"], rows.rejected
    """
    cfg = _options(SelfInstructConfig, config, {"n": n}, options)
    human = _instructions(seeds, "seeds")
    pool = [words(t) for t in human]
    machine: list[str] = []
    rng, calls, out, idle = random.Random(cfg.seed), _Calls(model, cfg.seed), Rows(), 0
    with _progress(cfg.n, "self-instruct", progress) as advance:
        while len(out) < cfg.n and idle < cfg.patience:
            k_machine = min(cfg.num_machine, len(machine))
            shown = rng.sample(human, min(cfg.num_seeds - k_machine, len(human))) + rng.sample(machine, k_machine)
            prompt = render(template, tasks=shown, count=cfg.new_per_call)
            before = len(out)
            written = model.chat(prompt, **calls(cfg.temperature, cfg.max_tokens))
            tasks = parse_instructions(written.text)
            if written.finish_reason == "length" and tasks:  # the last task may stop mid-sentence
                tasks.pop()
                out.rejected["truncated"] += 1
            for task in tasks:
                if len(out) >= cfg.n:
                    break
                tokens = words(task)
                why = instruction_problem(task, cfg) or (
                    "similar" if any(rouge_l(tokens, p) >= cfg.rouge_threshold for p in pool
                                     if 2 * min(len(p), len(tokens)) / (len(p) + len(tokens)) >= cfg.rouge_threshold)
                    else None)  # the length bound skips pairs whose LCS could never reach the threshold
                if why is None:
                    pool.append(tokens)  # seen now, so a failed answer does not let it back in later
                    reply = model.chat(render(response_template, instruction=task),
                                       **calls(cfg.answer_temperature, cfg.max_tokens))
                    why = _answer_problem(reply, cfg.keep_truncated)
                if why:
                    out.rejected[why] += 1
                    continue
                machine.append(task)
                out.append(chat_row(task, reply.text.strip(), method="self_instruct", source="model",
                                    model=_model_name(model)))
                advance(1)
            idle = 0 if len(out) > before else idle + 1
    return out
