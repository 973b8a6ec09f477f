"""Benchmarks scored from log-likelihoods and generations, in the style of lm-evaluation-harness.

    >>> import llmkit as lk
    >>> from llmkit.evals.harness import run_task, loglikelihood, perplexity
    >>> m = lk.model("hf:smollm2")
    >>> loglikelihood(m, [("The capital of France is", " Paris")])      # [(sum of logprobs, is_greedy)]
    >>> print(run_task(m, "arithmetic_mc", limit=20))                   # acc, acc_norm ± bootstrap stderr
    >>> perplexity(m, ["Some text."]).token_perplexity

A task is a YAML file (see ``Task`` for every field) with its data in JSONL beside it:

    task: arithmetic_mc
    output_type: multiple_choice        # or generate_until, loglikelihood_rolling
    data: arithmetic_mc.jsonl           # relative to the YAML
    fewshot_data: arithmetic_mc_fewshot.jsonl
    doc_to_text: "Question: {{ question }}\\nAnswer:"
    doc_to_choice: choices              # a doc field (or a literal list)
    doc_to_target: answer               # a doc field (or a Jinja2 template)

Shipped tasks live in ``llmkit/evals/tasks/`` (``list_tasks()``). Scoring log-likelihoods needs
the logits of the prompt, so it runs on the ``hf`` backend; ``generate_until`` tasks run on any
model through ``complete``.
"""
from __future__ import annotations

import json
import math
import random
import re
import string
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..core.errors import ConfigError, ContextLengthError, UnsupportedParameterError
from .types import jsonl_rows, yaml_mapping

TASKS_DIR = Path(__file__).parent / "tasks"
BATCH_TOKENS = 4096  # padded tokens per forward pass: bounds activation memory on a laptop
LOGIT_ROWS = 1024    # logit rows kept per forward pass (x vocab x 4 bytes: ~200 MB for SmolLM2)


# --- log-likelihoods (hf backend) ---------------------------------------------------------------
def _hf(model: Any, what: str):
    from ..models.hf import HFModel

    if isinstance(model, HFModel):
        return model
    hint = ("llama.cpp's engine does not expose prompt logprobs here; load the same weights in torch "
            "with lk.model('hf:smollm2')" if getattr(model, "provider", "") in ("local", "llamacpp") else
            "scoring needs the logits of the prompt, which only the hf backend gives; use lk.model('hf:...'), "
            "or a generate_until task")
    raise UnsupportedParameterError(what, getattr(model, "provider", type(model).__name__), hint)


def _encode(model, text: str) -> list[int]:
    return model.tokenizer.encode(text, add_special_tokens=False)  # as lm-eval's HFLM for causal models


def _prefix_token(model) -> int:
    """What an empty context is replaced by (lm-eval's prefix_token_id): BOS, else EOS."""
    tok = model.tokenizer
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def encode_pair(model, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens, split as lm-eval does.

    Trailing spaces of the context move to the continuation (``"Answer: " + "4"`` is scored as
    ``"Answer:" + " 4"``, as a tokenizer that glues spaces to words would see it). The whole string
    is encoded once and the continuation is ``whole[len(context tokens):]``; where the boundary
    merged context and continuation into one token, the continuation is encoded on its own, so the
    scored tokens always spell the continuation. An empty context becomes the prefix token.
    """
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    if not context:
        return [_prefix_token(model)], _encode(model, continuation)
    whole, ctx = _encode(model, context + continuation), _encode(model, context)
    cont = whole[len(ctx):]
    if whole[: len(ctx)] != ctx or not cont:
        cont = _encode(model, continuation)
    return ctx, cont


def loglikelihood(model, requests: list[tuple[str, str]], *, batch_size: int = 16,
                  progress: bool = False) -> list[tuple[float, bool]]:
    """For each ``(context, continuation)``: the summed log-probability of the continuation's tokens
    given the context, and whether greedy decoding would produce exactly those tokens.

    Example:
        >>> loglikelihood(lk.model("hf:smollm2"), [("The capital of France is", " Paris"), ("2 + 2 =", " 4")])
        [(-0.258, True), (-2.32, False)]
    """
    m = _hf(model, "loglikelihood")
    pairs = [encode_pair(m, c, x) if x else ([], []) for c, x in requests]  # empty continuation: log 1
    return loglikelihood_tokens(m, pairs, batch_size=batch_size, progress=progress)


def loglikelihood_tokens(model, pairs: list[tuple[list[int], list[int]]], *, batch_size: int = 16,
                         progress: bool = False) -> list[tuple[float, bool]]:
    """``loglikelihood`` on token ids (lm-eval's ``_loglikelihood_tokens``).

    Requests are sorted longest first and batched with right padding and no attention mask, which
    for a causal model leaves every real position exactly as in an unpadded forward. Logits are
    kept only from the first position any row scores. An empty context becomes the prefix token; a
    context longer than the window is cut on the left; a continuation longer than the window raises
    ContextLengthError.
    """
    import torch

    m = _hf(model, "loglikelihood")
    limit = m.context_length
    out: list[tuple[float, bool] | None] = [None] * len(pairs)
    rows = []  # (index, input ids, continuation ids)
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            out[i] = (0.0, True)
        elif len(cont) > limit:
            raise ContextLengthError(f"request {i}: the continuation has {len(cont)} tokens; the context of "
                                     f"hf:{m.name} holds {limit}", tokens=len(cont), limit=limit)
        else:
            rows.append((i, ((ctx or [_prefix_token(m)]) + cont)[-(limit + 1):][:-1], cont))
    rows.sort(key=lambda r: -len(r[1]))
    dev = m.model.device
    for batch in _track(_batches(rows, batch_size), "Scoring", progress):
        width = len(batch[0][1])
        ids = torch.full((len(batch), width), m.pad_token_id, dtype=torch.long)
        for j, (_, inp, _) in enumerate(batch):
            ids[j, : len(inp)] = torch.tensor(inp)
        first = min(len(inp) - len(cont) for _, inp, cont in batch)  # position predicting the first scored token
        with torch.inference_mode():
            logits = m.model(input_ids=ids.to(dev), logits_to_keep=width - first).logits.float()
            for j, (i, inp, cont) in enumerate(batch):
                lo = len(inp) - len(cont) - first
                row, target = logits[j, lo: lo + len(cont)], torch.tensor(cont, device=dev)
                logprobs = row.gather(-1, target[:, None])[:, 0] - row.logsumexp(-1)  # log_softmax, no vocab-wide copy
                out[i] = (float(logprobs.sum()), bool((row.argmax(-1) == target).all()))
    return out  # type: ignore[return-value]


def _batches(rows: list, batch_size: int) -> list[list]:
    """Consecutive rows (longest first) grouped under batch_size, BATCH_TOKENS and LOGIT_ROWS."""
    batches: list[list] = []
    for row in rows:
        if batches:
            batch = batches[-1]
            n, width = len(batch) + 1, len(batch[0][1])
            first = min(len(inp) - len(cont) for _, inp, cont in batch + [row])
            if n <= batch_size and n * width <= BATCH_TOKENS and n * (width - first) <= LOGIT_ROWS:
                batch.append(row)
                continue
        batches.append([row])
    return batches


def rolling_windows(tokens: list[int], prefix: int, max_length: int,
                    context_len: int = 1) -> list[tuple[list[int], list[int]]]:
    """lm-eval's disjoint rolling windows as ``(context, continuation)`` token pairs.

    Every token is scored exactly once. The first window scores up to ``max_length`` tokens after
    the prefix token; each later one scores the next ``max_length - context_len + 1`` tokens and
    fills the rest of its window with the tokens before them as context, so the last, shorter
    window overlaps the previous one and sees a full window of context.
    """
    if not 1 <= context_len <= max_length:
        raise ConfigError(f"context_len={context_len} must be between 1 and max_length={max_length}")
    if not tokens:
        return []
    pred_len, n = max_length - context_len + 1, min(max_length, len(tokens))
    windows, done = [([prefix], tokens[:n])], n
    while done < len(tokens):
        k = min(len(tokens) - done, pred_len)
        end = done + k
        window = tokens[max(0, end - max_length - 1): end - 1]
        windows.append((window[: len(window) - (k - 1)], tokens[done:end]))
        done = end
    return windows


def _rolling(model, texts: list[str], max_length: int | None, batch_size: int,
             progress: bool) -> list[tuple[float, int]]:
    """(log-likelihood, tokens) of each text, all windows of all texts batched together."""
    m = _hf(model, "loglikelihood_rolling")
    max_length = max_length or m.context_length
    if max_length > m.context_length:
        raise ConfigError(f"max_length={max_length} exceeds the {m.context_length}-token context of hf:{m.name}")
    pairs, owner, counts = [], [], []
    for t, text in enumerate(texts):
        tokens = _encode(m, text)
        counts.append(len(tokens))
        for w in rolling_windows(tokens, _prefix_token(m), max_length):
            pairs.append(w)
            owner.append(t)
    totals = [0.0] * len(texts)
    for t, (ll, _) in zip(owner, loglikelihood_tokens(m, pairs, batch_size=batch_size, progress=progress)):
        totals[t] += ll
    return list(zip(totals, counts))


def loglikelihood_rolling(model, text: str, max_length: int | None = None, *, batch_size: int = 16) -> float:
    """Total log-likelihood of ``text`` (natural log), every token scored once in windows of at most
    ``max_length`` tokens (default: the model's context), as lm-eval's ``loglikelihood_rolling``.

    Example:
        >>> loglikelihood_rolling(lk.model("hf:smollm2"), "The sun rose over the hills.")
    """
    return _rolling(model, [text], max_length, batch_size, False)[0][0]


@dataclass
class Perplexity:
    """Perplexities of a corpus: exp(-total log-likelihood / count) per token, word and byte."""

    loglikelihood: float
    tokens: int
    words: int
    bytes: int

    @property
    def token_perplexity(self) -> float:
        return math.exp(-self.loglikelihood / self.tokens)

    @property
    def word_perplexity(self) -> float:
        return math.exp(-self.loglikelihood / self.words)

    @property
    def byte_perplexity(self) -> float:
        return math.exp(-self.loglikelihood / self.bytes)

    @property
    def bits_per_byte(self) -> float:
        return -self.loglikelihood / self.bytes / math.log(2)


def perplexity(model, texts: list[str] | str, max_length: int | None = None, *, batch_size: int = 16,
               progress: bool = False) -> Perplexity:
    """Token-, word- and byte-level perplexity and bits per byte of ``texts`` taken together.

    Each text is scored on its own with ``loglikelihood_rolling``; words are whitespace-separated.

    Example:
        >>> p = perplexity(lk.model("hf:smollm2"), ["First document.", "Second one."])
        >>> p.token_perplexity, p.word_perplexity, p.bits_per_byte
    """
    texts = [texts] if isinstance(texts, str) else texts
    if not any(t.strip() for t in texts):
        raise ConfigError("perplexity needs at least one non-empty text")
    scored = _rolling(model, texts, max_length, batch_size, progress)
    return Perplexity(sum(ll for ll, _ in scored), sum(n for _, n in scored),
                      sum(len(t.split()) for t in texts), sum(len(t.encode()) for t in texts))


# --- generation metrics (SQuAD's) ---------------------------------------------------------------
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def exact_match(prediction: str, answers: str | list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer."""
    answers = [answers] if isinstance(answers, str) else answers
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def f1_score(prediction: str, answers: str | list[str]) -> float:
    """SQuAD's token F1 between the normalised prediction and the best-matching answer."""
    def f1(pred: list[str], gold: list[str]) -> float:
        common = sum((Counter(pred) & Counter(gold)).values())
        if not pred or not gold:
            return float(pred == gold)
        if common == 0:
            return 0.0
        p, r = common / len(pred), common / len(gold)
        return 2 * p * r / (p + r)

    answers = [answers] if isinstance(answers, str) else answers
    return max(f1(normalize_answer(prediction).split(), normalize_answer(a).split()) for a in answers)


def bootstrap_stderr(items: list, aggregate: Callable[[list], float] | None = None, iters: int = 1000,
                     seed: int = 0) -> float:
    """Standard deviation of ``aggregate`` (default: the mean) over ``iters`` resamples of ``items``."""
    import numpy as np

    if len(items) < 2 or iters < 2:
        return float("nan")
    aggregate = aggregate or (lambda xs: sum(xs) / len(xs))
    rng = np.random.default_rng(seed)
    stats = [aggregate([items[k] for k in rng.integers(0, len(items), len(items))]) for _ in range(iters)]
    return float(np.std(stats, ddof=1))


# --- tasks ----------------------------------------------------------------------------------------
class Task(BaseModel):
    """One benchmark: a YAML file validated by this model (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field("", description="the task's name (default: the YAML file's stem)")
    output_type: Literal["multiple_choice", "generate_until", "loglikelihood_rolling"] = Field(
        description="multiple_choice: pick the likeliest choice; generate_until: generate and compare; "
                    "loglikelihood_rolling: perplexity of each doc's text")
    data: str = Field(description="the docs, a JSONL file (one object per line), relative to the YAML")
    fewshot_data: str | None = Field(None, description="JSONL of docs few-shot examples are drawn from")
    num_fewshot: int = Field(0, ge=0, description="few-shot examples put before each doc (drawn with the run's seed)")
    description: str = Field("", description="text put at the start of every prompt, before the examples")
    doc_to_text: str = Field(description="Jinja2 template over a doc's fields: the prompt (or, for "
                                         "loglikelihood_rolling, the text scored)")
    doc_to_target: str | None = Field(None, description="the doc field (or a Jinja2 template) holding the answer: "
                                                        "a choice's index or text, or a list of accepted answers")
    doc_to_choice: str | list[str] | None = Field(None, description="multiple_choice: the doc field holding the "
                                                                    "choices, or a literal list of them")
    target_delimiter: str = Field(" ", description="put between the prompt and a choice or a few-shot answer")
    fewshot_delimiter: str = Field("\n\n", description="put between few-shot examples and before the doc")
    until: list[str] = Field(["\n\n"], description="generate_until: stop sequences")
    max_tokens: int = Field(32, ge=1, description="generate_until: most tokens generated per doc")
    max_length: int | None = Field(None, ge=2, description="loglikelihood_rolling: window size (default: the model's context)")
    license: str | None = Field(None, description="the data's licence")

    _path: Path = PrivateAttr(default=Path("."))
    _templates: dict = PrivateAttr(default_factory=dict)

    def docs(self) -> list[dict]:
        return _read_jsonl(self._path.parent / self.data, self._path, "data")

    def fewshot_docs(self) -> list[dict]:
        if self.fewshot_data is None:
            return []
        return _read_jsonl(self._path.parent / self.fewshot_data, self._path, "fewshot_data")

    def render(self, name: str, doc: dict) -> str:
        import jinja2

        try:
            return self._templates[name].render(**doc)
        except jinja2.UndefinedError as e:
            raise ConfigError(f"{self._path}: field {name!r}: {e.message} in doc {_short(doc)}") from None

    def value(self, name: str, doc: dict) -> Any:
        """A ``doc_to_*`` field: a template's rendering, or the doc's value under that field name."""
        spec = getattr(self, name)
        if isinstance(spec, list):
            return spec
        if name in self._templates:
            return self.render(name, doc)
        if spec not in doc:
            raise ConfigError(f"{self._path}: field {name!r}: doc {_short(doc)} has no field {spec!r}")
        return doc[spec]

    def choices(self, doc: dict) -> list[str]:
        choices = self.value("doc_to_choice", doc)
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{self._path}: field 'doc_to_choice': expected a non-empty list of choices, got "
                              f"{choices!r:.80} (doc {_short(doc)})")
        return [str(c) for c in choices]

    def target_text(self, doc: dict) -> str:
        """The answer as text, as few-shot examples show it."""
        if self.output_type == "multiple_choice":
            choices = self.choices(doc)
            return choices[self.gold(doc, choices)]
        target = self.value("doc_to_target", doc)
        return str(target[0]) if isinstance(target, list) else str(target)

    def gold(self, doc: dict, choices: list[str]) -> int:
        target = self.value("doc_to_target", doc)
        if isinstance(target, str) and target.strip().isdigit() and target not in choices:
            target = int(target)
        if isinstance(target, int) and 0 <= target < len(choices):
            return target
        if isinstance(target, str) and target in choices:
            return choices.index(target)
        raise ConfigError(f"{self._path}: field 'doc_to_target': {target!r} is neither an index into nor one of "
                          f"the choices {choices} (doc {_short(doc)})")

    def prompt(self, doc: dict, shots: list[dict]) -> str:
        """``description`` + each example with its answer + the doc, joined by ``fewshot_delimiter``."""
        examples = [self.render("doc_to_text", d) + self.target_delimiter + self.target_text(d) for d in shots]
        return self.description + self.fewshot_delimiter.join(examples + [self.render("doc_to_text", doc)])


def _short(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False)[:120]


def _read_jsonl(path: Path, task_path: Path, field_name: str) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"{task_path}: field {field_name!r}: data file {str(path)!r} does not exist")
    docs = []
    for n, doc in jsonl_rows(path):
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}:{n}: each line must be a JSON object, got {type(doc).__name__}")
        docs.append(doc)
    return docs


_TEMPLATE_FIELDS = ("doc_to_text", "doc_to_target", "doc_to_choice")
_REQUIRED = {"multiple_choice": ("doc_to_target", "doc_to_choice"), "generate_until": ("doc_to_target",),
             "loglikelihood_rolling": ()}


def list_tasks() -> list[str]:
    """Names of the tasks shipped with llmkit."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_task(name_or_path: str | Path) -> Task:
    """A shipped task by name (``"arithmetic_mc"``) or a task YAML by path, validated.

    Raises ConfigError naming the file and the field for an unknown ``output_type``, a missing or
    unknown field, a template that does not compile, or a data file that does not exist.
    """
    import jinja2

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = TASKS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"no task {str(name_or_path)!r}; shipped tasks: {', '.join(list_tasks())} "
                              f"(or pass a path to a task .yaml)")
    raw, _ = yaml_mapping(path, "task", "output_type, data and doc_to_text")
    try:
        task = Task(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{path}: field {where!r}: {msg}") from None
    for name in _REQUIRED[task.output_type]:
        if getattr(task, name) is None:
            raise ConfigError(f"{path}: field {name!r} is required for output_type {task.output_type}")
    task.task, task._path = task.task or path.stem, path
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    for name in _TEMPLATE_FIELDS:
        spec = getattr(task, name)
        if name == "doc_to_text" or (isinstance(spec, str) and ("{{" in spec or "{%" in spec)):
            try:
                task._templates[name] = env.from_string(spec)
            except jinja2.TemplateSyntaxError as e:
                raise ConfigError(f"{path}: field {name!r}: template syntax error: {e.message}") from None
    for name in ("data", "fewshot_data"):
        if getattr(task, name) and not (path.parent / getattr(task, name)).is_file():
            raise ConfigError(f"{path}: field {name!r}: data file {str(path.parent / getattr(task, name))!r} does not exist")
    return task


# --- running a task ---------------------------------------------------------------------------------
@dataclass
class Sample:
    """One doc's record, for reports: what was asked, what came back, how it scored."""

    doc_id: int
    doc: dict
    prompt: str
    target: Any = None                   # the gold index, or the accepted answers
    prediction: Any = None               # the chosen choice's text, or the generated text
    lls: list[float] | None = None       # multiple_choice: log-likelihood of each choice
    is_greedy: list[bool] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    correct: bool | None = None          # acc, or exact match


@dataclass
class TaskResult:
    """Metrics of one task on one model: the mean of each and its bootstrap standard error."""

    task: str
    output_type: str
    model: str
    num_fewshot: int
    metrics: dict[str, float]
    stderr: dict[str, float]
    samples: list[Sample]

    def __str__(self) -> str:
        shown = ", ".join(f"{k} {v:.4f} ± {self.stderr[k]:.4f}" for k, v in self.metrics.items())
        return f"{self.task} on {self.model} ({len(self.samples)} docs, {self.num_fewshot}-shot): {shown}"


def _track(items: list, what: str, show: bool):
    """A rich progress bar on stderr when ``show`` and stderr is a terminal (as core/progress.py)."""
    if not show or not sys.stderr.isatty():
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=what, console=Console(stderr=True), transient=True)


def run_task(model, task: str | Path | Task, *, limit: int | None = None, num_fewshot: int | None = None,
             seed: int = 0, progress: bool = True, bootstrap_iters: int = 1000) -> TaskResult:
    """Run a benchmark task on ``model`` and score it.

    Args:
        model: an llmkit model; log-likelihood tasks need the ``hf`` backend.
        task: a shipped task's name, a path to a task YAML, or a loaded ``Task``.
        limit: score only the first ``limit`` docs.
        num_fewshot: examples per prompt (default: the task's ``num_fewshot``).
        seed: draws the few-shot examples and the bootstrap resamples.
        progress: a progress bar on stderr (when it is a terminal).
        bootstrap_iters: resamples behind each standard error.

    Metrics: multiple_choice → ``acc``, ``acc_norm`` (log-likelihood divided by the choice's length
    in bytes); generate_until → ``exact_match``, ``f1``; loglikelihood_rolling → ``word_perplexity``,
    ``byte_perplexity``, ``bits_per_byte``, ``token_perplexity``.

    Example:
        >>> r = run_task(lk.model("hf:smollm2"), "arithmetic_mc", limit=20, num_fewshot=3)
        >>> r.metrics["acc"], r.stderr["acc"], r.samples[0].prompt
    """
    task = task if isinstance(task, Task) else load_task(task)
    k = task.num_fewshot if num_fewshot is None else num_fewshot
    docs = task.docs()[:limit]
    pool = task.fewshot_docs() if k else []
    if k and task.output_type == "loglikelihood_rolling":
        raise ConfigError(f"{task._path}: num_fewshot={k}: a loglikelihood_rolling task scores each text on its own; use 0")
    if k > len(pool):
        raise ConfigError(f"{task._path}: num_fewshot={k} needs fewshot_data with at least {k} docs, "
                          f"{'it has ' + str(len(pool)) if task.fewshot_data else 'and there is none'}")
    rng = random.Random(seed)
    prompts = [task.prompt(d, rng.sample(pool, k) if k else []) for d in docs]
    run = {"multiple_choice": _multiple_choice, "generate_until": _generate_until,
           "loglikelihood_rolling": _perplexity_task}[task.output_type]
    samples, per_doc, aggregates = run(model, task, docs, prompts, progress)
    metrics, stderr = {}, {}
    for name, agg in aggregates.items():
        metrics[name] = agg(per_doc)
        stderr[name] = bootstrap_stderr(per_doc, agg, bootstrap_iters, seed)
    return TaskResult(task.task, task.output_type, getattr(model, "name", str(model)), k, metrics, stderr, samples)


def _mean(key: str) -> Callable[[list], float]:
    return lambda rows: sum(r[key] for r in rows) / len(rows)


def _multiple_choice(model, task: Task, docs, prompts, progress):
    choices = [task.choices(d) for d in docs]
    requests = [(p, task.target_delimiter + c) for p, cs in zip(prompts, choices) for c in cs]
    scored = iter(loglikelihood(model, requests, progress=progress))
    samples = []
    for i, (doc, prompt, cs) in enumerate(zip(docs, prompts, choices)):
        gold = task.gold(doc, cs)
        res = [next(scored) for _ in cs]
        lls = [ll for ll, _ in res]
        best = max(range(len(cs)), key=lls.__getitem__)
        best_norm = max(range(len(cs)), key=lambda j: lls[j] / max(1, len(cs[j].encode())))
        metrics = {"acc": float(best == gold), "acc_norm": float(best_norm == gold)}
        samples.append(Sample(i, doc, prompt, gold, cs[best], lls, [g for _, g in res], metrics, best == gold))
    return samples, [s.metrics for s in samples], {"acc": _mean("acc"), "acc_norm": _mean("acc_norm")}


def _generate_until(model, task: Task, docs, prompts, progress):
    samples = []
    for i in _track(range(len(docs)), f"Generating {task.task}", progress):
        answers = task.value("doc_to_target", docs[i])
        answers = [str(a) for a in answers] if isinstance(answers, list) else [str(answers)]
        text = model.complete(prompts[i], temperature=0, max_tokens=task.max_tokens, stop=task.until).text
        metrics = {"exact_match": exact_match(text, answers), "f1": f1_score(text, answers)}
        samples.append(Sample(i, docs[i], prompts[i], answers, text, metrics=metrics,
                              correct=bool(metrics["exact_match"])))
    return samples, [s.metrics for s in samples], {"exact_match": _mean("exact_match"), "f1": _mean("f1")}


def _perplexity_task(model, task: Task, docs, prompts, progress):
    # the prompt is the text (few-shot examples would be scored too; rolling tasks use none)
    scored = _rolling(model, prompts, task.max_length, 16, progress)
    rows = [{"ll": ll, "tokens": n, "words": len(t.split()), "bytes": len(t.encode())}
            for (ll, n), t in zip(scored, prompts)]
    samples = [Sample(i, d, p, prediction=r["ll"], metrics=r) for i, (d, p, r) in enumerate(zip(docs, prompts, rows))]

    def corpus(name: str) -> Callable[[list], float]:  # a corpus-level ratio, not a mean of per-doc ones
        return lambda rs: getattr(Perplexity(*(sum(r[k] for r in rs) for k in ("ll", "tokens", "words", "bytes"))), name)

    return samples, rows, {k: corpus(k) for k in ("word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity")}
