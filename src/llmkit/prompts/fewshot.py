"""Few-shot prompting: pick demonstrations within a token budget, then format them.

Selection strategies (Liu et al. 2021, "What Makes Good In-Context Examples for GPT-3?"):

- ``fixed``: the examples in the order given;
- ``random``: a seeded shuffle (the same seed, the same pick);
- ``semantic``: the examples closest to the query by embedding cosine (default embedder: the
  embedded MiniLM, ``llmkit.rag.Embedder``; any object with ``embed(list[str])`` works);
- ``mmr``: maximal marginal relevance (``llmkit.rag.answer.mmr``): close to the query, unlike
  each other, so three near-identical demonstrations do not crowd out the rest.

Each strategy ranks the examples; examples are then taken in rank order while they fit the
budget (one that would overflow it is skipped, a shorter one after it may still fit), up to ``k``.
Cost is counted on the formatted example with ``model.count_tokens`` when a model is given,
else :func:`approx_tokens`.

Example:
    >>> shots = [Example("2 + 2", "4"), Example("capital of France", "Paris"), Example("3 * 3", "9")]
    >>> sel = FewShot(shots, strategy="semantic", k=2, budget=200, embedder=HashEmbedder())
    >>> messages = sel.messages("5 + 7", system="Answer briefly.")   # system, 2 user/assistant pairs, the query
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

from ..core.errors import ConfigError, UnsupportedParameterError
from ..core.types import Message

STRATEGIES = ("fixed", "random", "semantic", "mmr")
STYLES = ("turns", "inline")

#: An example as inline text (``style="inline"``); ``{output}`` is the formatted answer.
EXAMPLE_TEMPLATE = "Input: {input}\nOutput: {output}"
#: The inline prompt: the examples, then the query in the same layout, left open for the answer.
INLINE_TEMPLATE = "{examples}\n\nInput: {input}\nOutput:"
#: A demonstration's answer when it has a rationale (few-shot chain-of-thought, Wei et al. 2022);
#: ``cot.extract_answer`` reads the "The answer is" sentence back.
RATIONALE_TEMPLATE = "{rationale} The answer is {output}."
#: Separator between inline examples.
EXAMPLE_SEPARATOR = "\n\n"
#: Tokens a chat message costs beyond its text (role markers), in the approximation.
MESSAGE_OVERHEAD = 4


@dataclass
class Example:
    """One demonstration: an ``input``, its ``output``, and optionally the ``rationale`` (reasoning)
    that leads to the output (shown before it, for chain-of-thought)."""

    input: str
    output: str
    rationale: str = ""

    def answer(self, rationale_template: str = RATIONALE_TEMPLATE) -> str:
        """The assistant side: the output, after the rationale when there is one."""
        if not self.rationale:
            return self.output
        return rationale_template.format(rationale=self.rationale.strip(), output=self.output)


def as_example(x: Any) -> Example:
    """An Example from an Example, a dict (``input``/``output``/``rationale``; ``question``/``answer``
    also accepted) or an ``(input, output[, rationale])`` tuple."""
    if isinstance(x, Example):
        return x
    if isinstance(x, dict):
        inp = x.get("input", x.get("question"))
        out = x.get("output", x.get("answer"))
        if inp is None or out is None:
            raise ConfigError(f"example {x!r} needs 'input' and 'output' (or 'question' and 'answer')")
        return Example(str(inp), str(out), str(x.get("rationale", "") or ""))
    if isinstance(x, (tuple, list)) and len(x) in (2, 3):
        return Example(*(str(v) for v in x))
    raise ConfigError(f"example {x!r} must be an Example, a dict with input/output, or an (input, output) tuple")


def approx_tokens(text: str) -> int:
    """About 4 characters a token (OpenAI's rule of thumb for English); at least 1 for any text."""
    return math.ceil(len(text) / 4) if text else 0


def count_tokens(item: str | list[Message], model: Any = None) -> int:
    """Tokens in a string or messages: ``model.count_tokens`` when the model can, else
    :func:`approx_tokens` (plus :data:`MESSAGE_OVERHEAD` per message)."""
    if model is not None:
        try:
            return int(model.count_tokens(item))
        except (UnsupportedParameterError, NotImplementedError, AttributeError):
            pass
    if isinstance(item, str):
        return approx_tokens(item)
    return sum(approx_tokens(m.content) + MESSAGE_OVERHEAD for m in item)


def example_turns(examples: Sequence[Any], rationale_template: str = RATIONALE_TEMPLATE) -> list[Message]:
    """Examples as alternating user / assistant messages."""
    out = []
    for ex in map(as_example, examples):
        out += [Message(role="user", content=ex.input), Message(role="assistant", content=ex.answer(rationale_template))]
    return out


def example_text(examples: Sequence[Any], template: str = EXAMPLE_TEMPLATE,
                 rationale_template: str = RATIONALE_TEMPLATE, separator: str = EXAMPLE_SEPARATOR) -> str:
    """Examples as one block of text, each through ``template`` (``{input}``, ``{output}``)."""
    return separator.join(template.format(input=ex.input, output=ex.answer(rationale_template))
                          for ex in map(as_example, examples))


def format_examples(examples: Sequence[Any], style: str = "turns", **templates: str) -> list[Message] | str:
    """``style="turns"``: user/assistant messages; ``"inline"``: one text block (see :func:`example_text`)."""
    if style == "turns":
        return example_turns(examples, **{k: v for k, v in templates.items() if k == "rationale_template"})
    if style == "inline":
        return example_text(examples, **templates)
    raise ConfigError(f"style={style!r} is not one of {', '.join(STYLES)}")


class FewShot:
    """Selects demonstrations for a query and builds the prompt around them.

    Args:
        examples: Examples, dicts with input/output(/rationale), or tuples.
        strategy: ``fixed``, ``random``, ``semantic`` or ``mmr``.
        k: most examples to use.
        budget: most tokens the formatted examples may take (None: no limit).
        model: counts tokens with ``model.count_tokens`` (None: :func:`approx_tokens`).
        embedder: for ``semantic``/``mmr``; anything with ``embed(list[str]) -> vectors``
            (None: the embedded MiniLM, loaded on first use).
        seed: the ``random`` strategy's seed.
        lambda_: ``mmr``'s relevance weight (1: pure similarity, 0: pure diversity).
        style: ``turns`` (user/assistant messages) or ``inline`` (one text block).
        template, inline_template, rationale_template: the visible formats (module constants).

    The example vectors are computed once, on the first semantic or MMR selection.

    Example:
        >>> fs = FewShot(examples, strategy="mmr", k=4, budget=300, model=m)
        >>> m.chat(fs.messages("Is this review positive?"), temperature=0)
    """

    def __init__(self, examples: Sequence[Any], *, strategy: str = "fixed", k: int = 4, budget: int | None = None,
                 model: Any = None, embedder: Any = None, seed: int = 0, lambda_: float = 0.5, style: str = "turns",
                 template: str = EXAMPLE_TEMPLATE, inline_template: str = INLINE_TEMPLATE,
                 rationale_template: str = RATIONALE_TEMPLATE):
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
        if style not in STYLES:
            raise ConfigError(f"style={style!r} is not one of {', '.join(STYLES)}")
        if not isinstance(k, int) or k < 0:
            raise ConfigError(f"k={k!r} must be a whole number >= 0")
        if budget is not None and budget < 0:
            raise ConfigError(f"budget={budget!r} must be >= 0 tokens (or None for no limit)")
        if not 0.0 <= lambda_ <= 1.0:
            raise ConfigError(f"lambda_={lambda_} must be between 0 and 1")
        self.examples = [as_example(x) for x in examples]
        self.strategy, self.k, self.budget, self.model = strategy, k, budget, model
        self.embedder, self.seed, self.lambda_, self.style = embedder, seed, lambda_, style
        self.template, self.inline_template, self.rationale_template = template, inline_template, rationale_template
        self._vectors: list[list[float]] | None = None

    # --- selection ------------------------------------------------------------------------
    def cost(self, example: Example) -> int:
        """Tokens ``example`` takes in the prompt, formatted in this selector's style."""
        if self.style == "turns":
            return count_tokens(example_turns([example], self.rationale_template), self.model)
        text = example_text([example], self.template, self.rationale_template)
        return count_tokens(text + EXAMPLE_SEPARATOR, self.model)

    def rank(self, query: str | None = None) -> list[int]:
        """Indices of all examples, best first, under the strategy (before the budget)."""
        n = len(self.examples)
        if self.strategy == "fixed":
            return list(range(n))
        if self.strategy == "random":
            order = list(range(n))
            random.Random(self.seed).shuffle(order)
            return order
        if query is None:
            raise ConfigError(f"strategy={self.strategy!r} needs the query to compare the examples with")
        if not n:
            return []
        from ..rag.answer import _cosine, mmr

        q = self._embed([query])[0]
        vecs = self._example_vectors()
        if self.strategy == "semantic":
            sims = [_cosine(q, v) for v in vecs]
            return sorted(range(n), key=lambda i: (-sims[i], i))  # ties: the earlier example
        return mmr(q, vecs, n, self.lambda_)

    def select(self, query: str | None = None) -> list[Example]:
        """Up to ``k`` examples in rank order whose formatted cost fits ``budget`` in total."""
        picked, used = [], 0
        for i in self.rank(query):
            if len(picked) >= self.k:
                break
            c = self.cost(self.examples[i])
            if self.budget is not None and used + c > self.budget:
                continue  # too long for what is left; a shorter one further down may fit
            picked.append(self.examples[i])
            used += c
        return picked

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if self.embedder is None:
            from ..rag.embedders import Embedder

            self.embedder = Embedder()
        return [list(v) for v in self.embedder.embed(texts)]

    def _example_vectors(self) -> list[list[float]]:
        if self._vectors is None:
            self._vectors = self._embed([ex.input for ex in self.examples])
        return self._vectors

    # --- prompt building ------------------------------------------------------------------
    def messages(self, query: str, system: str | None = None, examples: Sequence[Example] | None = None) -> list[Message]:
        """The prompt: ``system`` (if any), the selected examples, then ``query``.

        In ``turns`` style each example is a user/assistant pair and ``query`` the last user
        message; in ``inline`` style one user message holds :data:`INLINE_TEMPLATE` filled in."""
        chosen = self.select(query) if examples is None else [as_example(x) for x in examples]
        head = [Message(role="system", content=system)] if system else []
        if self.style == "turns":
            return head + example_turns(chosen, self.rationale_template) + [Message(role="user", content=query)]
        block = example_text(chosen, self.template, self.rationale_template)
        text = self.inline_template.format(examples=block, input=query).lstrip() if block else query
        return head + [Message(role="user", content=text)]


def select_examples(examples: Sequence[Any], query: str | None = None, *, strategy: str = "fixed", k: int = 4,
                    budget: int | None = None, model: Any = None, embedder: Any = None, seed: int = 0,
                    lambda_: float = 0.5, style: str = "turns") -> list[Example]:
    """One-off :meth:`FewShot.select` (a :class:`FewShot` keeps the example vectors between queries).

    Example:
        >>> select_examples(shots, "5 + 7", strategy="semantic", k=2, budget=100, embedder=e)
        [Example(input='2 + 2', output='4', rationale=''), ...]
    """
    return FewShot(examples, strategy=strategy, k=k, budget=budget, model=model, embedder=embedder, seed=seed,
                   lambda_=lambda_, style=style).select(query)


__all__ = ["Example", "FewShot", "select_examples", "format_examples", "example_turns", "example_text", "as_example",
           "count_tokens", "approx_tokens", "STRATEGIES", "STYLES", "EXAMPLE_TEMPLATE", "INLINE_TEMPLATE",
           "RATIONALE_TEMPLATE", "EXAMPLE_SEPARATOR", "MESSAGE_OVERHEAD"]
