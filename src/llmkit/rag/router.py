"""Routing: send each question to the source that can answer it — a knowledge base, a SQL
database, or the model alone.

The model picks a route name with ``model.choose`` (structured output: locally the grammar allows
only the names, remotely the reply is validated and re-asked), so a route outside the table can
never come back. A rules function, or an explicit ``override``, is consulted first. Every
decision is a ``rag.route`` span holding the question, the routes offered and the one chosen.

    >>> from llmkit.rag import KnowledgeBase
    >>> from llmkit.rag.router import Router
    >>> from llmkit.rag.sql import Database
    >>> router = Router(lk.model(), routes={
    ...     "handbook": (KnowledgeBase("handbook"), "company policies: leave, expenses, security"),
    ...     "sales": (Database("sqlite:///shop.db"), "orders, customers and revenue figures"),
    ...     "none": "greetings and general knowledge: answered without looking anything up",
    ... })
    >>> router.route("How many orders did Ada place?")
    Route(name='sales', reason=None, by='model')
    >>> router.answer("How many days of leave do I get?").text
    >>> print(ROUTER_TEMPLATE)          # the whole prompt; pass template= to change it
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import tracing
from ..core.errors import ConfigError
from ..core.types import user

ROUTER_TEMPLATE = """Decide which source should answer the question.

Sources:
{routes}

Question: {question}

Pick the one source whose description fits the question best."""


@dataclass
class Route:
    """A routing decision: the route's ``name``, the model's ``reason`` (with ``explain=True``, or the
    rule's), and ``by`` whom: ``"model"``, ``"rule"`` or ``"override"``."""

    name: str
    reason: str | None = None
    by: str = "model"


@dataclass
class RoutedAnswer:
    """What :meth:`Router.answer` returns: the route, and the result of the route's target —
    an ``rag.Answer`` (knowledge base), an ``rag.sql.SQLResult`` (database) or a ``Completion`` (none)."""

    route: Route
    result: Any

    @property
    def text(self) -> str:
        """The answer as text; a SQL result as a tab-separated table with its header."""
        r = self.result
        if hasattr(r, "rows") and hasattr(r, "columns"):
            return "\n".join("\t".join(str(v) for v in row) for row in [r.columns, *r.rows])
        return r.text


def _kind(target: Any) -> str:
    """``"kb"``, ``"sql"`` or ``"none"``: what answering through ``target`` means."""
    if target is None:
        return "none"
    from .sql import Database

    if isinstance(target, Database):
        return "sql"
    if callable(getattr(target, "search", None)):
        return "kb"
    raise ConfigError(f"route target {target!r} is neither a knowledge base (with .search), "
                      "a llmkit.rag.sql.Database, nor None")


class Router:
    """Pick a route for a question, and answer through it.

    Args:
        model: the llmkit model that routes (and answers, in :meth:`answer`).
        routes: ``{name: description}`` or ``{name: (target, description)}``; a target is a
            knowledge base, a ``rag.sql.Database``, or None (the model answers alone, the same
            as a bare description).
        rules: ``rules(question) -> name | Route | None``, tried before the model; None = ask the model.
        template: the routing prompt, with ``{routes}`` (``- name: description`` lines) and ``{question}``.
        explain: ask for a one-sentence reason before the choice (JSON with an enum of the names);
            slower, and the reason lands in ``Route.reason``.

    Example:
        >>> r = Router(m, routes={"billing": "invoices and payments", "tech": "bugs and errors"},
        ...            rules=lambda q: "billing" if "invoice" in q.lower() else None)
        >>> r.route("Where is my invoice?").by
        'rule'
    """

    def __init__(self, model: Any, routes: dict[str, Any], *, rules: Callable[[str], Any] | None = None,
                 template: str = ROUTER_TEMPLATE, explain: bool = False):
        if not isinstance(routes, dict) or not routes:
            raise ConfigError("routes must be a non-empty dict {name: description} or {name: (target, description)}")
        self.targets: dict[str, Any] = {}
        self.descriptions: dict[str, str] = {}
        for name, spec in routes.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"route name {name!r} must be a non-empty string")
            target, description = spec if isinstance(spec, tuple) and len(spec) == 2 else (None, spec)
            if not isinstance(description, str):
                raise ConfigError(f"route {name!r}: expected a description string or a (target, description) pair, "
                                  f"got {spec!r:.120}")
            _kind(target)  # refuse an unusable target now, not at the first question
            self.targets[name], self.descriptions[name] = target, description
        if rules is not None and not callable(rules):
            raise ConfigError(f"rules={rules!r} must be a function question -> route name or None")
        self.model, self.rules, self.template, self.explain = model, rules, template, explain
        self.prompt("")  # a bad template fails here

    @property
    def names(self) -> list[str]:
        return list(self.descriptions)

    def prompt(self, question: str) -> str:
        """The routing prompt for ``question``, exactly as the model gets it (before the choice
        instructions ``model.choose`` appends)."""
        lines = "\n".join(f"- {name}: {d}" if d else f"- {name}" for name, d in self.descriptions.items())
        try:
            return self.template.format(routes=lines, question=question)
        except (KeyError, IndexError) as e:
            raise ConfigError(f"router template has an unknown placeholder {e}; accepted: {{routes}}, {{question}} "
                              "(double other braces: {{ }})") from None

    def _checked(self, route: Any, by: str) -> Route:
        r = route if isinstance(route, Route) else Route(str(route), by=by)
        if r.name not in self.descriptions:
            raise ConfigError(f"{by} chose route {r.name!r}, which is not one of: {', '.join(self.names)}")
        return r

    def route(self, question: str, *, override: str | None = None, **sampling: Any) -> Route:
        """The route for ``question``: ``override`` if given, else the rules' answer, else the model's.

        ``**sampling`` goes to the model call (``temperature`` defaults to 0).
        """
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"question={question!r} must be a non-empty string")
        with tracing.span("rag.route", {"llmkit.rag.question": question if tracing.record_content() else None,
                                        "llmkit.rag.routes": self.names}) as s:
            if override is not None:
                r = self._checked(Route(override, by="override"), "override")
            elif self.rules is not None and (ruled := self.rules(question)) is not None:
                r = self._checked(ruled, "rule")
            else:
                r = self._ask(question, sampling)
            s.set_attributes(tracing.clean({"llmkit.rag.route": r.name, "llmkit.rag.route_by": r.by,
                                            "llmkit.rag.route_reason": r.reason}))
        return r

    def _ask(self, question: str, sampling: dict[str, Any]) -> Route:
        sampling.setdefault("temperature", 0)
        messages = [user(self.prompt(question))]
        if not self.explain:
            return Route(self.model.choose(messages, self.names, **sampling))
        schema = {"type": "object", "additionalProperties": False, "required": ["reason", "route"],
                  "properties": {"reason": {"type": "string", "maxLength": 300},
                                 "route": {"type": "string", "enum": self.names}}}  # reason first: think, then pick
        obj = self.model.json(messages, schema=schema, **sampling)
        return Route(obj["route"], obj["reason"])

    def answer(self, question: str, *, override: str | None = None, **options: Any) -> RoutedAnswer:
        """Route ``question``, then answer it through the route's target.

        A knowledge base answers with ``rag.answer(model, kb, question, **options)``, a database
        with ``rag.sql.ask(model, db, question, **options)``, no target with
        ``model.chat(question, **options)`` (``temperature`` defaults to 0).

        Example:
            >>> a = router.answer("How many orders are there?")
            >>> a.route.name, a.text
            ('sales', 'COUNT(*)\\n42')
        """
        r = self.route(question, override=override)
        target = self.targets[r.name]
        kind = _kind(target)
        if kind == "kb":
            from .answer import answer

            result = answer(self.model, target, question, **options)
        elif kind == "sql":
            from .sql import ask

            result = ask(self.model, target, question, **options)
        else:
            options.setdefault("temperature", 0)
            result = self.model.chat([user(question)], **options)
        return RoutedAnswer(r, result)
