"""serve/ui/structured.py: constrained generation from the Structured tab — the functions, then a
real browser on a real server (127.0.0.1) showing JSON that validates, and a bad schema's error."""
from __future__ import annotations

import json

import pytest
from browser import Live, open_ui, screenshot

from llmkit.models.scripted import ScriptedModel
from llmkit.serve.ui.structured import (
    EXAMPLES,
    Invoice,
    Person,
    example_schema,
    generate,
)

ADA = '{"name": "Ada Lovelace", "age": 36, "email": "ada@example.com"}'


# --- the tab's function, no browser ------------------------------------------------------------
def test_example_schema_gives_a_validated_pydantic_object():
    m = ScriptedModel([ADA])
    out, status = generate(m, "JSON Schema", EXAMPLES["Person"][1], example_schema("Person"), "Person")
    assert Person.model_validate_json(out) == Person(name="Ada Lovelace", age=36, email="ada@example.com")
    assert status.startswith("Valid: matches the Person model")
    assert '"age"' in m.prompts[0] and "Ada Lovelace is 36" in m.prompts[0]  # the schema was shown to the model


def test_an_edited_schema_is_used_as_a_dict_and_invalid_output_is_retried_then_reported():
    schema = json.dumps({"type": "object", "properties": {"n": {"type": "integer", "minimum": 10}}, "required": ["n"]})
    m = ScriptedModel(['{"n": 3}', '{"n": 12}'])
    out, status = generate(m, "JSON Schema", "a number", schema, "Person")
    assert json.loads(out) == {"n": 12} and "the schema" in status
    assert "minimum" in m.prompts[1] or "10" in m.prompts[1]  # the repair prompt named the error
    out, status = generate(ScriptedModel(['{"n": 3}'], repeat=True), "JSON Schema", "a number", schema, max_retries=1)
    assert out == "" and "StructuredOutputError" in status and "3 is less than the minimum of 10" in status


@pytest.mark.parametrize("schema, shown", [
    ('{"type": "strin"}', "invalid JSON Schema at type"),
    ('{"type": "object",', "the schema is not valid JSON"),
    ('[1, 2]', "a JSON Schema must be a dict"),
])
def test_a_bad_schema_is_an_error_message_and_the_model_is_not_called(schema, shown):
    m = ScriptedModel([ADA])
    out, status = generate(m, "JSON Schema", "anything", schema, "(custom)")
    assert out == "" and status.startswith("**Error**") and shown in status and m.calls == []


def test_regex_and_choice_modes():
    out, status = generate(ScriptedModel(["2026-11-26"]), "Regex", "today?", pattern=r"\d{4}-\d{2}-\d{2}")
    assert out == "2026-11-26" and status.startswith("Valid")
    out, status = generate(ScriptedModel(["2026"]), "Regex", "x", pattern=r"(", max_retries=0)
    assert out == "" and "ConstraintError" in status and "regex '('" in status
    out, status = generate(ScriptedModel(["Negative."]), "Choice", "'awful' is?", choices="positive, negative")
    assert out == "negative" and "one of positive, negative" in status
    out, status = generate(ScriptedModel(["meh"], repeat=True), "Choice", "x", choices="yes\nno", max_retries=0)
    assert out == "" and "is not one of ['yes', 'no']" in status


def test_invoice_example_validates_nested_items():
    reply = json.dumps({"number": "INV-7", "customer": "Acme Ltd", "total": 17.5,
                        "items": [{"description": "widget", "quantity": 3, "unit_price": 2.5},
                                  {"description": "gadget", "quantity": 1, "unit_price": 10.0}]})
    out, _ = generate(ScriptedModel([reply]), "JSON Schema", EXAMPLES["Invoice"][1], example_schema("Invoice"), "Invoice")
    inv = Invoice.model_validate_json(out)
    assert [i.quantity for i in inv.items] == [3, 1] and inv.total == 17.5


@pytest.mark.integration
def test_the_embedded_model_is_held_to_the_schema(embedded):
    out, status = generate(embedded, "JSON Schema", EXAMPLES["Person"][1], example_schema("Person"), "Person",
                           max_tokens=128)
    assert status.startswith("Valid"), status
    assert Person.model_validate_json(out).name  # enforced token by token: it always parses


# --- a real browser on a real server (fixtures: tests/ui/conftest.py) ------------------------------
def code_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} .cm-content").inner_text()


def test_browser_schema_to_valid_json_and_a_bad_schema_error(page, shots):
    from playwright.sync_api import expect

    model = ScriptedModel([ADA])
    with Live(model, ui=True, shutdown_timeout=1) as srv:
        open_ui(page, srv.url, "Structured")
        page.locator("#structured-generate").click()
        expect(page.locator("#structured-status")).to_contain_text("Valid: matches the Person model")
        shown = json.loads(code_text(page, "structured-output"))
        assert Person.model_validate(shown).age == 36
        screenshot(page, shots, "structured-valid")

        page.locator("#structured-example input").fill("(custom)")  # a schema of one's own
        page.locator("#structured-schema .cm-content").click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text('{"type": "strin"}')
        page.locator("#structured-generate").click()
        expect(page.locator("#structured-status")).to_contain_text("invalid JSON Schema at type")
        assert "ConstraintError" in page.locator("#structured-status").inner_text()
        screenshot(page, shots, "structured-error")
    assert len(model.calls) == 1  # the bad schema never reached the model
