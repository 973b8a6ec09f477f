"""``UIContext``: what every tab of the web UI is handed — the served model, the key check, and
the other models a playground may pick.

Tabs call models in-process, never over HTTP. Write handlers as plain functions or generators
(not ``async def``): Gradio runs them in worker threads, so a long generation never blocks the
event loop that answers ``/v1``.

Queue only the work that takes a model call (``queue=True``, Gradio's default); give the quick
steps (a preview, a lookup, a vote, a list refresh) ``queue=False``. Gradio 6's page reads every
queued event of a tab over one event stream that the server closes when the tab's last queued
event finishes, and an event joined in that instant is never read: the page waits forever (a
race seen about once in three CI runs while a chat preview finished as Send was clicked). One
queued event per user action leaves nothing to finish while the next one joins.

Example (a tab module):
    >>> def build(ctx: UIContext) -> None:
    ...     box, out = gr.Textbox(label="prompt"), gr.Textbox(label="answer")
    ...     def answer(prompt, key):
    ...         ctx.check_key(key)
    ...         return ctx.model().chat(prompt, max_tokens=64).text
    ...     box.submit(answer, [box, ctx.key], out)
"""
from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import LLMKitError
from ...models.base import Model


@dataclass
class UIContext:
    """Handed to every tab's ``build(ctx)``.

    Attributes:
        served: the app's ``Served`` (``.model``, ``.name``, ``.config``, ``.embedder()``).
        api_key_required: whether the server was started with ``api_key``; the UI then asks for it.
        key: the header's key box (a Gradio component, present even when no key is required):
            add it to a handler's inputs and pass its value to :meth:`check_key`.
        on_load: ``(fn, inputs, outputs)`` triples run when the page loads (fill a panel, list
            knowledge bases); ``build_ui`` wires them to ``Blocks.load``, unqueued.
        blocks: the page's ``gr.Blocks``, for a tab that needs ``blocks.load`` as one trigger among others.
    """

    served: Any
    api_key_required: bool = False
    key: Any = None
    on_load: list[tuple[Any, Any, Any]] = field(default_factory=list)
    blocks: Any = None
    _models: dict[str, Model] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check_key(self, key: str | None) -> None:
        """Raise ``gr.Error`` (shown in the browser) when the server needs a key and ``key`` is not it."""
        if not self.api_key_required:
            return
        import gradio as gr

        want = self.served.config.api_key.get_secret_value().encode()
        if not key:
            raise gr.Error("This server requires an API key: enter it in the key box at the top of the page.")
        if not hmac.compare_digest(key.strip().encode(), want):  # constant time, like the API's check
            raise gr.Error("Invalid API key: enter the server's key (llmkit serve --api-key / $LLMKIT_API_KEY).")

    def model_choices(self) -> list[str]:
        """What a model picker offers: the served model first, then other models usable here
        without a placeholder in their spec (keyed providers need a model name: type it in)."""
        from ...models import status

        choices = [self.served.name]
        concrete = {"local": "local", "hf": "hf:smollm2"}  # the rows of `llmkit models` that name one model
        for row in status():
            spec = concrete.get(row["provider"])
            if spec and row["usable"] and spec not in choices and not self._is_served(spec):
                choices.append(spec)
        return choices

    def model(self, spec: str | None = None) -> Model:
        """The served model for ``None``, ``""`` or its name; else ``lk.model(spec)``, loaded once
        and kept (loading takes seconds: call it from a handler, not while building the page).

        Raises:
            gr.Error: the spec cannot be loaded here (unknown provider, missing key or file).
        """
        if not spec or self._is_served(spec):
            return self.served.model
        import gradio as gr

        import llmkit as lk

        with self._lock:  # two tabs asking at once load it once
            if spec not in self._models:
                try:
                    self._models[spec] = lk.model(spec)
                except (LLMKitError, ImportError, ValueError) as e:
                    raise gr.Error(f"cannot load model {spec!r}: {e}") from None
            return self._models[spec]

    def _is_served(self, spec: str) -> bool:
        config_spec = self.served.config.model
        return spec in (self.served.name, config_spec) or (not config_spec and spec == "local"
                                                             and self.served.model.provider == "local")
