"""The Structured tab: a JSON Schema (or a Pydantic example), a regex or a list of choices, a
prompt → output the model was held to, validated, shown as pretty JSON.

``generate(model, ...)`` does the work and returns ``(output, status)``; ``build(ctx)`` lays out
the tab. Local models enforce the constraint token by token; remote ones are validated and
re-asked (``Model.chat(constraint=...)``). A bad schema or regex shows its ``ConstraintError``.
"""
from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field

from ...core.errors import LLMKitError

MODES = ("JSON Schema", "Regex", "Choice")


# Bounded lengths and counts keep a small model from writing one string (or item) forever.
class Person(BaseModel):
    name: str = Field(max_length=80)
    age: int = Field(ge=0, le=150)
    email: str | None = Field(None, max_length=80)


class LineItem(BaseModel):
    description: str = Field(max_length=80)
    quantity: int = Field(ge=1, le=10_000)
    unit_price: float = Field(ge=0, le=1e6)


class Invoice(BaseModel):
    number: str = Field(max_length=20)
    customer: str = Field(max_length=80)
    items: list[LineItem] = Field(min_length=1, max_length=10)
    total: float = Field(ge=0, le=1e9)


#: name → (Pydantic class, a prompt it fits)
EXAMPLES: dict[str, tuple[type[BaseModel], str]] = {
    "Person": (Person, "Extract the person: Ada Lovelace is 36 and writes from ada@example.com."),
    "Invoice": (Invoice, "Invoice INV-7 for Acme Ltd: 3 widgets at 2.50 each and 1 gadget at 10.00; total 17.50."),
}


def example_schema(name: str) -> str:
    """The JSON Schema of a built-in example, as the schema box shows it."""
    return json.dumps(EXAMPLES[name][0].model_json_schema(), indent=2)


def _schema(schema_text: str, example: str | None) -> Any:
    """The example's Pydantic class while its schema is unchanged (Pydantic then validates), else the dict."""
    if example in EXAMPLES and schema_text.strip() == example_schema(example).strip():
        return EXAMPLES[example][0]
    try:
        return json.loads(schema_text)
    except json.JSONDecodeError as e:
        raise LLMKitError(f"the schema is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _choices(text: str) -> list[str]:
    """One option per line, or comma-separated on one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return [o.strip() for o in lines[0].split(",") if o.strip()] if len(lines) == 1 else lines


def generate(model: Any, mode: str, prompt: str, schema_text: str = "", example: str | None = None,
             pattern: str = "", choices: str = "", temperature: float = 0.0, max_tokens: int = 512,
             max_retries: int = 1) -> tuple[str, str]:
    """Run one constrained generation; returns ``(output, status markdown)``, errors in the status.

    Example:
        >>> generate(lk.model(), "Regex", "Today's date?", pattern=r"\\d{4}-\\d{2}-\\d{2}")
        ('2025-01-01', 'Valid: matches the regex ...')
    """
    from ...structured import Choice, JSONSchema, Regex, Typed

    if not prompt.strip():
        return "", "**Error:** write a prompt first."
    sampling = {"temperature": float(temperature), "max_tokens": int(max_tokens), "max_retries": int(max_retries)}
    t0 = time.perf_counter()
    try:
        if mode == "JSON Schema":
            schema = _schema(schema_text, example)
            value = model.json(prompt, schema=Typed(schema) if isinstance(schema, type) else JSONSchema(schema),
                               **sampling)
            what = f"the {example} model" if isinstance(schema, type) else "the schema"
            shown = json.dumps(value, indent=2, ensure_ascii=False) if not isinstance(value, BaseModel) \
                else value.model_dump_json(indent=2)
        elif mode == "Regex":
            value = model.chat(prompt, constraint=Regex(pattern), instructions=True, **sampling).parsed
            what, shown = f"the regex `{pattern}`", value
        elif mode == "Choice":
            options = _choices(choices)
            value = model.chat(prompt, constraint=Choice(options), instructions=True, **sampling).parsed
            what, shown = f"one of {', '.join(options)}", value
        else:
            return "", f"**Error:** unknown mode {mode!r}; accepted: {', '.join(MODES)}"
    except LLMKitError as e:  # ConstraintError (bad schema/regex), StructuredOutputError, ConfigError …
        return "", f"**Error** ({type(e).__name__}): {e}"
    return shown, f"Valid: matches {what} ({time.perf_counter() - t0:.1f}s)."


def build(ctx: Any) -> None:
    """The tab's components and events (called inside a ``gr.Tab`` by ``ui/app.py``)."""
    import gradio as gr

    first = next(iter(EXAMPLES))
    with gr.Row():
        with gr.Column():
            mode = gr.Radio(list(MODES), value=MODES[0], label="Constrain the output to", elem_id="structured-mode")
            example = gr.Dropdown([*EXAMPLES, "(custom)"], value=first, label="Pydantic example",
                                  elem_id="structured-example")
            schema = gr.Code(example_schema(first), language="json", label="JSON Schema", interactive=True,
                             elem_id="structured-schema")
            pattern = gr.Textbox(r"\d{4}-\d{2}-\d{2}", label="Regex (matches the whole output)", visible=False,
                                 elem_id="structured-pattern")
            choices = gr.Textbox("positive\nnegative\nneutral", lines=3, label="Choices (one per line)", visible=False,
                                 elem_id="structured-choices")
            prompt = gr.Textbox(EXAMPLES[first][1], lines=3, label="Prompt", elem_id="structured-prompt")
            with gr.Row():
                temperature = gr.Slider(0, 2, value=0, step=0.1, label="Temperature")
                max_tokens = gr.Number(512, precision=0, minimum=1, label="Max tokens")
            run = gr.Button("Generate", variant="primary", elem_id="structured-generate")
        with gr.Column():
            status = gr.Markdown(elem_id="structured-status")
            output = gr.Code(language="json", label="Output", interactive=False, elem_id="structured-output")

    def pick(name: str):
        if name not in EXAMPLES:
            return gr.update(), gr.update()
        return example_schema(name), EXAMPLES[name][1]

    def switch(m: str):
        return (gr.update(visible=m == "JSON Schema"), gr.update(visible=m == "JSON Schema"),
                gr.update(visible=m == "Regex"), gr.update(visible=m == "Choice"))

    def go(m, ex, sch, pat, ch, pr, temp, mt, key):
        ctx.check_key(key)
        return generate(ctx.model(None), m, pr, sch, ex, pat, ch, temp, mt or 512)

    example.change(pick, example, [schema, prompt], queue=False)
    mode.change(switch, mode, [example, schema, pattern, choices], queue=False)
    key = ctx.key if ctx.key is not None else gr.State("")
    run.click(go, [mode, example, schema, pattern, choices, prompt, temperature, max_tokens, key], [output, status])
