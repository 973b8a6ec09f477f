"""Signatures: string and class forms, typed and described fields, derived signatures, and the
structured output they ask for (a program never fails on formatting)."""
from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from llmkit.core.errors import ConfigError
from llmkit.models.scripted import ScriptedModel
from llmkit.programs import (
    ChainOfThought,
    Example,
    InputField,
    OutputField,
    Predict,
    Prediction,
    Signature,
    make_signature,
)
from llmkit.programs.signatures import (
    ensure_signature,
    signature_from_state,
    signature_state,
)


class QA(Signature):
    """Answer the question with a whole number."""

    question: str = InputField(desc="a question about counting")
    answer: int = OutputField(desc="the count")


class City(BaseModel):
    name: str
    population: int


class Describe(Signature):
    """Describe the city."""

    text: str = InputField()
    city: City = OutputField(desc="the city the text is about")
    mood: Literal["happy", "sad"] = OutputField()


def test_class_signature_fields_types_and_instructions():
    assert QA.input_fields == ["question"] and QA.output_fields == ["answer"]
    assert QA.instructions == "Answer the question with a whole number."
    assert QA.describe("answer") == "the count"
    assert QA.spec == "question: str -> answer: int"
    schema = QA.output_model().model_json_schema()
    assert schema["properties"]["answer"]["type"] == "integer"
    assert schema["properties"]["answer"]["description"] == "the count"
    assert schema["required"] == ["answer"] and "question" not in schema["properties"]

    class Bounded(Signature):
        text: str = InputField()
        stars: int = OutputField(desc="1 to 5", ge=1, le=5)

    props = Bounded.output_model().model_json_schema()["properties"]["stars"]
    assert (props["minimum"], props["maximum"]) == (1, 5)  # Field constraints reach the output schema


def test_string_signature_types_default_instructions_and_errors():
    sig = make_signature("question, context: list[str] -> answer: int, label: Literal['a', 'b']")
    assert sig.input_fields == ["question", "context"] and sig.output_fields == ["answer", "label"]
    assert sig.model_fields["context"].annotation == list[str]
    assert sig.model_fields["question"].annotation is str  # untyped fields are text
    assert sig.instructions == "Given the fields `question`, `context`, produce the fields `answer`, `label`."
    assert make_signature("a -> b", "Copy a.").instructions == "Copy a."
    for bad, words in [("question answer", "->"), ("a -> ", "no output"), ("a, a -> b", "twice"),
                       ("a: os.system -> b", "unknown type"), ("1x -> b", "not a field name")]:
        with pytest.raises(ConfigError, match=words):
            make_signature(bad)
    with pytest.raises(ConfigError, match="Signature class"):
        ensure_signature(42)


def test_derived_signatures_are_new_classes():
    cot = QA.prepend("reasoning", OutputField(desc="think"))
    assert cot.output_fields == ["reasoning", "answer"] and QA.output_fields == ["answer"]
    assert cot.instructions == QA.instructions
    more = QA.append("hint", InputField())
    assert more.input_fields == ["question", "hint"]
    other = QA.with_instructions("Count carefully.")
    assert other.instructions == "Count carefully." and QA.instructions.startswith("Answer the question")
    with pytest.raises(ConfigError, match="already has"):
        QA.prepend("answer", OutputField())


def test_a_field_may_be_called_instructions():
    class Edit(Signature):
        """Follow the instructions."""

        instructions: str = InputField()
        result: str = OutputField()

    assert Edit.input_fields == ["instructions"] and Edit.instructions == "Follow the instructions."


def test_signature_state_round_trip():
    sig = make_signature("q, n: int -> a: list[str]", "Do it.")
    back = signature_from_state(signature_state(sig))
    assert back.spec == sig.spec and back.instructions == "Do it."
    klass = signature_from_state({**signature_state(Describe), "instructions": "New words."})
    assert klass.model_fields["city"].annotation is City and klass.instructions == "New words."  # class re-imported


def test_typed_outputs_are_validated_and_bad_replies_repaired():
    m = ScriptedModel(['The city is Paris!',                                   # not JSON
                       '{"city": {"name": "Paris", "population": "many"}, "mood": "happy"}',  # wrong type
                       '{"city": {"name": "Paris", "population": 2100000}, "mood": "happy"}'])
    pred = Predict(Describe, model=m)(text="Paris in spring")
    assert isinstance(pred, Prediction)
    assert isinstance(pred.city, City) and pred.city.population == 2100000 and pred.mood == "happy"
    assert len(m.calls) == 3  # two repairs, never an exception for the caller
    assert "Invalid JSON" in m.calls[1][0][-1].content and "population" in m.calls[2][0][-1].content


def test_prompt_shows_instructions_fields_and_schema():
    m = ScriptedModel('{"reasoning": "3 sides", "answer": 3}')
    cot = ChainOfThought(QA, model=m)
    assert cot(question="How many sides has a triangle?").answer == 3
    system, last = m.calls[0][0][0], m.calls[0][0][-1]
    assert system.role == "system" and system.content.startswith("Answer the question with a whole number.")
    assert "- question (str): a question about counting" in system.content
    assert "- reasoning (str)" in system.content and "- answer (int): the count" in system.content
    assert last.content.startswith("question: How many sides has a triangle?")
    assert '"answer"' in last.content and "JSON Schema" in last.content  # the output schema rides on the last turn


def test_example_inputs_and_labels():
    ex = Example(question="q", answer="a", note="n").with_inputs("question")
    assert ex.inputs() == {"question": "q"} and ex.labels() == {"answer": "a", "note": "n"}
    assert ex.answer == "a" and ex["note"] == "n" and "question" in ex
    with pytest.raises(AttributeError, match="no field 'missing'"):
        _ = ex.missing
    with pytest.raises(ValueError, match="with_inputs"):
        Example(a=1).inputs()
