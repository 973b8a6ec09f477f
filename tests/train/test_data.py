"""Training data: row formats, errors that name the file, row (line) and field, loss masks that
cover exactly the answers, packing that trains exactly like one-by-one, and a seeded split."""
from __future__ import annotations

import json

import pytest

from llmkit.core.errors import ConfigError
from llmkit.train.data import (
    IGNORE,
    collate,
    encode_chat,
    encode_pair,
    pack,
    read_rows,
    split,
)

EOT = "<|im_end|>\n"  # SmolLM2's end of turn: the template writes a newline after <|im_end|>, and it is part of the turn

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
ROWS = {
    "chat": CHAT,
    "completion": {"prompt": "2+2=", "completion": "4"},
    "text": {"text": "Once upon a time"},
    "preference": {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
    "kto": {"prompt": "2+2=", "completion": "4", "label": True},
    "prompt": {"prompt": "Write a haiku"},
}


def labelled_spans(tokenizer, ex: dict) -> list[str]:
    """The decoded runs of consecutive trained tokens."""
    spans, cur = [], []
    for tok, label in zip(ex["input_ids"], ex["labels"]):
        if label != IGNORE:
            assert label == tok, "a trained token's label must be the token itself (the model shifts)"
            cur.append(tok)
        elif cur:
            spans, cur = spans + [cur], []
    spans += [cur] if cur else []
    return [tokenizer.decode(s) for s in spans]


# --- formats ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(ROWS))
def test_every_row_format_is_detected(jsonl, fmt):
    row = {**ROWS[fmt], "meta": {"source": "x"}}  # extra keys are ignored
    rows = read_rows(jsonl([row, row]))
    assert [r["_format"] for r in rows] == [fmt, fmt]
    assert [r["_row"] for r in rows] == [1, 2]


def test_json_list_files_and_message_list_prompts_are_read(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
                                 "chosen": "4", "rejected": "5"}]))
    (row,) = read_rows(path, "preference")
    assert row["_format"] == "preference" and row["_row"] == 1


# --- errors: file, row (the line number) and field --------------------------------------------
BAD = [  # (lines, fmt, what the message must contain besides the file name and "row N")
    ([CHAT, "", {"prompt": "x"}], ("chat", "completion", "text"), ["row 3", "missing fields", "completion"]),
    ([CHAT, {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hey"}]}], "auto",
     ["row 2", "messages[1].role", "'bot'", "assistant"]),
    ([{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "?"}]}], "auto",
     ["row 1", "messages[0].content", "int", "string"]),
    ([CHAT, CHAT, '{"messages": [ oops'], "auto", ["row 3", "not valid JSON"]),
    ([ROWS["kto"], {"prompt": "a", "completion": "b", "label": "yes"}], "kto", ["row 2", "label", "'yes'", "true"]),
    ([CHAT, ROWS["text"]], "auto", ["mixes row formats", "chat (row 1)", "text (row 2)"]),
    ([{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}], "auto",
     ["row 1", "messages", "no assistant turn"]),
    ([ROWS["preference"], {"prompt": "p", "chosen": "", "rejected": "r"}], "preference", ["row 2", "chosen", "empty"]),
    ([{"text": ["not", "a", "string"]}], "auto", ["row 1", "text", "list"]),
]


@pytest.mark.parametrize("lines,fmt,needles", BAD, ids=["missing-field", "role-bot", "content-int", "bad-json",
                                                         "kto-label", "mixed", "no-assistant", "empty-answer", "text-list"])
def test_bad_rows_name_file_row_and_field(jsonl, lines, fmt, needles):
    path = jsonl(lines, "mydata.jsonl")
    with pytest.raises(ConfigError) as e:
        read_rows(path, fmt)
    msg = str(e.value)
    assert "mydata.jsonl" in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_empty_and_missing_files_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match=r"empty\.jsonl.*empty"):
        read_rows(tmp_path / "empty.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        read_rows(tmp_path / "nope.jsonl")


# --- loss masks ------------------------------------------------------------------------------
def test_encode_chat_labels_exactly_the_assistant_turns(tokenizer):
    msgs = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "It is 4."}]
    ex = encode_chat(tokenizer, msgs)
    assert len(ex["input_ids"]) == len(ex["labels"])
    text = tokenizer.decode(ex["input_ids"])
    assert text == tokenizer.apply_chat_template(msgs, tokenize=False)
    assert labelled_spans(tokenizer, ex) == ["Hello! How can I help?" + EOT, "It is 4." + EOT]
    trained = tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE])
    for unseen in ("Be terse", "Hi there", "2+2", "user", "system", "<|im_start|>"):
        assert unseen not in trained
    last = encode_chat(tokenizer, msgs, train="last")
    assert last["input_ids"] == ex["input_ids"] and labelled_spans(tokenizer, last) == ["It is 4." + EOT]


def test_encode_pair_labels_only_the_completion(tokenizer):
    ex = encode_pair(tokenizer, "Capital of France?", "Paris.")
    assert labelled_spans(tokenizer, ex) == ["Paris." + EOT]
    assert "Capital of France?" in tokenizer.decode(ex["input_ids"])
    raw = encode_pair(tokenizer, "Capital of France?", " Paris.", chat_template=False)
    assert tokenizer.decode(raw["input_ids"]) == "Capital of France? Paris." + tokenizer.eos_token
    assert labelled_spans(tokenizer, raw) == [" Paris." + tokenizer.eos_token]


# --- packing ---------------------------------------------------------------------------------
def test_packed_batch_loss_equals_the_summed_per_example_losses(tokenizer, tiny_dir):
    """A packed row (position_ids restart per example, no attention mask) must give each example
    the loss it has alone: if attention leaked across examples, later examples would differ."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmkit.train.model import token_logps, token_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    convs = [[{"role": "user", "content": f"Question {i}: what is {i} times {i}?"},
              {"role": "assistant", "content": f"The answer is {i * i}." * (1 + i % 3)}] for i in range(5)]
    examples = [encode_chat(tokenizer, c) for c in convs]
    packed = pack(examples, max_length=10_000)
    assert len(packed) == 1 and len(packed[0]["input_ids"]) == sum(len(e["input_ids"]) for e in examples)
    assert packed[0]["position_ids"][:len(examples[0]["input_ids"]) + 1] == list(range(len(examples[0]["input_ids"]))) + [0]
    with torch.no_grad():
        alone = [token_loss(model, collate([e], tokenizer.pad_token_id)) for e in examples]
        together, count = token_loss(model, collate(packed, tokenizer.pad_token_id))
        # two packed rows of different lengths in one batch: padding must not start a new sequence that attends back
        two = pack(examples, max_length=sum(len(e["input_ids"]) for e in examples[:3]))
        assert len(two) == 2
        both, both_count = token_loss(model, collate(two, tokenizer.pad_token_id))
        # per token, which is far more sensitive than the sum: a leak moves single tokens by ~0.05 nats here
        packed_logps, mask = token_logps(model, collate(packed, tokenizer.pad_token_id))
        alone_logps = torch.cat([token_logps(model, collate([e], tokenizer.pad_token_id))[0][0] for e in examples])
    expected = sum(float(s) for s, _ in alone)
    assert int(count) == int(both_count) == sum(int(n) for _, n in alone)
    assert float(together) == pytest.approx(expected, rel=1e-4)
    assert float(both) == pytest.approx(expected, rel=1e-4)
    assert torch.allclose(packed_logps[mask], alone_logps, atol=1e-4)


def test_pack_respects_max_length_and_keeps_labels_aligned():
    exs = [{"input_ids": list(range(100 * k, 100 * k + n)), "labels": [IGNORE] * 2 + list(range(100 * k + 2, 100 * k + n))}
           for k, n in enumerate([5, 4, 6, 3, 7])]
    rows = pack(exs, max_length=10)
    assert all(len(r["input_ids"]) <= 10 for r in rows)
    assert [t for r in rows for t in r["input_ids"]] == [t for e in exs for t in e["input_ids"]]
    assert [t for r in rows for t in r["labels"]] == [t for e in exs for t in e["labels"]]
    assert [len(r["input_ids"]) == len(r["position_ids"]) for r in rows] == [True] * len(rows)


# --- split -----------------------------------------------------------------------------------
def test_split_is_seeded_disjoint_and_complete():
    rows = [{"i": i} for i in range(20)]
    train, val = split(rows, 0.25, seed=1)
    assert len(val) == 5 and len(train) == 15
    assert sorted(r["i"] for r in train + val) == list(range(20))  # disjoint and complete
    assert split(rows, 0.25, seed=1) == (train, val)
    assert split(rows, 0.25, seed=2)[1] != val
    assert split(rows, 0.01, seed=0)[1] and split(rows, 0.0, seed=0) == (rows, [])  # at least one held out; 0 = none
    assert split(rows[:1], 0.5, seed=0) == (rows[:1], [])  # a single row is never held out
