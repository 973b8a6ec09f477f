"""Chain-of-thought: answer extraction, normalisation, majority votes, self-consistency's seeds
and temperature, the second constrained call, least-to-most and step-back, on scripted models."""
import pytest

import llmkit as lk
from llmkit.models.scripted import ScriptedModel
from llmkit.prompts import (ANSWER_EXTRACTION_TEMPLATE, COT_TRIGGER, LEAST_TO_MOST_DECOMPOSE, STEP_BACK_TEMPLATE,
                            Example, FewShot, chain_of_thought, cot_messages, extract_answer, extract_number,
                            least_to_most, majority_vote, normalize_answer, parse_subquestions, self_consistency,
                            step_back)


@pytest.mark.parametrize("text, number, expected", [
    ("3 pens of 4 sheep is 12 sheep. The answer is 12.", False, "12"),
    ("So the answer is Paris. I hope this helps.", False, "Paris"),
    ("Reasoning...\nAnswer: **blue**\n", False, "blue"),
    ("The answer is 5.5. Done.", False, "5.5"),
    ("First guess: the answer is 3. Wait, no.\nFinal Answer: 4", False, "4"),        # "Final Answer" beats "the answer is"
    ("The answer is 7. Then again, the answer is 8.", False, "8"),                   # the last statement wins
    ("We get \\boxed{42} at the end.", False, "42"),
    ("No conclusion here.", False, None),
    ("The answer is $1,250 dollars.", True, "1250"),
    ("She has 3 + 4 = 7 apples, then buys 5, so 12 apples.", True, "12"),           # no phrase: the last number
    ("The answer is twelve, i.e. 12.0 in digits.", True, "12"),
    ("There are -3 degrees.", True, "-3"),
    ("Nothing numeric.", True, None),
])
def test_extract_answer(text, number, expected):
    assert extract_answer(text, number=number) == expected


@pytest.mark.parametrize("raw, norm", [
    ("1,000", "1000"), ("1000.0", "1000"), ("5.0", "5"), ("5.", "5"), ("$5", "5"), ("50%", "50"),
    ("0.50", "0.5"), ("-0", "0"), ("+7", "7"), ("1,234.50", "1234.5"),
    ("  Paris. ", "paris"), ("PARIS!", "paris"), ("New   York", "new york"), ("U.S.A.", "usa"),
    ("", ""), (None, ""),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_extract_number_keeps_separate_numbers_apart():
    assert extract_number("lists 1,2,3") == "3"
    assert extract_number("pages 3-5") == "5"
    assert extract_number("cost: 1,000,000.00") == "1000000"


def test_majority_vote_normalises_and_breaks_ties_by_first_seen():
    v = majority_vote(["1,000", "999", "1000.0", None, "999.00", "1000"])
    assert (v.answer, v.normalized, v.count) == ("1,000", "1000", 3)
    assert v.agreement == pytest.approx(3 / 6)                       # the unanswered sample counts against it
    assert v.votes == {"1000": 3, "999": 2}
    tie = majority_vote(["b", "a", "a", "b"])
    assert tie.answer == "b" and tie.votes == {"b": 2, "a": 2}       # same count: the earlier answer
    assert majority_vote(["a", "b", "b", "a"]).answer == "a"
    none = majority_vote([None, ""])
    assert none.answer is None and none.agreement == 0.0 and none.votes == {}


def test_self_consistency_votes_and_passes_seeds_and_temperature():
    replies = ["2 + 3 = 5. The answer is 5.", "I think it is 6. The answer is 6.",
               "Five in all. Answer: 5.0", "Hmm, I cannot tell.", "So 5 apples."]
    m = ScriptedModel(replies)
    v = self_consistency(m, "Tom has 2 apples and gets 3 more. How many?", n=5, temperature=0.8, seed=10,
                         number=True, max_tokens=64)
    assert v.answer == "5" and v.count == 3 and v.votes == {"5": 3, "6": 1}
    assert v.agreement == pytest.approx(3 / 5)
    assert v.answers == ["5", "6", "5", None, "5"]
    assert [s.reasoning for s in v.samples] == replies
    sent = [s for _, s, _ in m.calls]
    assert [s.seed for s in sent] == [10, 11, 12, 13, 14]
    assert all(s.temperature == 0.8 and s.max_tokens == 64 for s in sent)
    assert all(COT_TRIGGER in msgs[-1].content for msgs, _, _ in m.calls)


def test_self_consistency_text_answers_and_no_seed():
    m = ScriptedModel(["The answer is Paris.", "The answer is paris", "The answer is Lyon.", "Answer: PARIS!"])
    v = self_consistency(m, "Capital of France?", n=4, seed=None)
    assert v.answer == "Paris" and v.normalized == "paris" and v.count == 3
    assert all(s.seed is None and s.temperature == 0.7 for _, s, _ in m.calls)


@pytest.mark.parametrize("kw, match", [({"temperature": 0}, "temperature=0 must be > 0"), ({"n": 0}, "n=0")])
def test_self_consistency_refuses_greedy_or_no_samples(kw, match):
    with pytest.raises(lk.ConfigError, match=match):
        self_consistency(ScriptedModel(["x"], repeat=True), "q", **kw)


def test_cot_messages_zero_shot_and_few_shot():
    zero = cot_messages("Is 17 prime?", system="Be careful.")
    assert [(m.role, m.content) for m in zero] == [("system", "Be careful."), ("user", f"Is 17 prime?\n\n{COT_TRIGGER}")]
    assert cot_messages("Q?", trigger="Think first.", template="{trigger} {question}")[0].content == "Think first. Q?"
    shots = [Example("Roger has 5 balls and buys 2 cans of 3. How many?", "11", rationale="2 cans of 3 is 6; 5 + 6 = 11.")]
    few = cot_messages("Ann has 2 bags of 4 pears. How many?", examples=shots)
    assert few[1].content == "2 cans of 3 is 6; 5 + 6 = 11. The answer is 11."
    assert COT_TRIGGER not in few[-1].content                        # the rationales show the way
    selected = cot_messages("2 bags of 4?", examples=FewShot(shots * 3, k=1))
    assert len(selected) == 3
    assert cot_messages("Q?", ask_format=True)[0].content.endswith('"The answer is X."')


def test_second_constrained_call_reads_the_answer():
    m = ScriptedModel(["17 has no divisors but 1 and itself, so it is prime.", "yes"])
    r = chain_of_thought(m, "Is 17 prime?", extract="call", choices=["yes", "no"], temperature=0)
    assert r.answer == "yes" and r.reasoning.startswith("17 has")
    follow = m.calls[1][0]
    assert [x.role for x in follow] == ["user", "assistant", "user"]
    assert follow[1].content == r.reasoning and follow[2].content.startswith(ANSWER_EXTRACTION_TEMPLATE)
    # a number: a regex constraint; a reply that breaks it is re-asked
    m = ScriptedModel(["3 * 4 is twelve.", "twelve", "12.0"])
    r = chain_of_thought(m, "3 * 4?", extract="call", number=True, temperature=0)
    assert r.answer == "12" and len(m.calls) == 3
    assert chain_of_thought(ScriptedModel(["ok"]), "q", extract=lambda t: t.upper()).answer == "OK"
    with pytest.raises(lk.ConfigError, match="extract='magic'"):
        chain_of_thought(ScriptedModel(["ok"]), "q", extract="magic")


def test_parse_subquestions():
    assert parse_subquestions("Sub-questions:\n1. How long is one trip?\n2) How many trips fit?\n- Bonus?") == [
        "How long is one trip?", "How many trips fit?", "Bonus?"]


def test_least_to_most_answers_in_order_with_earlier_answers_in_view():
    q = "Amy climbs for 4 minutes and slides for 1. The slide closes in 15 minutes. How many times can she slide?"

    def reply(msgs, tools):
        text = msgs[-1].content
        if text.startswith(LEAST_TO_MOST_DECOMPOSE.split("{")[0][:40]):
            return "1. How long does one trip take?\n2. How many trips fit in 15 minutes?"
        if "Answer this sub-question briefly: How long" in text:
            return "One trip takes 4 + 1 = 5 minutes."
        if "sub-question briefly: How many trips" in text:
            assert "A: One trip takes 4 + 1 = 5 minutes." in text   # the earlier answer is in the prompt
            return "15 / 5 = 3. The answer is 3."
        assert "Q: How many trips fit in 15 minutes?\nA: 15 / 5 = 3" in text
        return "She can slide 3 times. The answer is 3."

    m = ScriptedModel(reply, repeat=True)
    r = least_to_most(m, q, temperature=0)
    assert r.subquestions == ["How long does one trip take?", "How many trips fit in 15 minutes?", q]
    assert r.answer == "3" and len(r.answers) == 3 and len(m.calls) == 4


def test_step_back_uses_the_principles_as_background():
    m = ScriptedModel(["What is the ideal gas law?", "pV = nRT: at fixed volume pressure is proportional to temperature.",
                       "The pressure doubles."])
    r = step_back(m, "What happens to a gas's pressure if its temperature doubles at fixed volume?", temperature=0)
    assert r.step_back_question == "What is the ideal gas law?" and r.answer == "The pressure doubles."
    assert m.calls[0][0][0].content == STEP_BACK_TEMPLATE.format(question=m.calls[0][0][0].content.split("Question: ")[-1])
    final = m.calls[2][0][0].content
    assert "pV = nRT" in final and "What is the ideal gas law?" in final and final.endswith("fixed volume?")
