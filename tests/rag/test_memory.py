"""rag/memory.py: conversation memory in SQLite — buffer, window, summary, vector recall.

A scripted model (it counts a word as a token, plus one per message) and the hashing embedder
keep budgets and similarities exact.
"""
import subprocess
import sys
import textwrap

import pytest

from llmkit.core import tracing
from llmkit.core.errors import ConfigError
from llmkit.core.types import Completion, ToolCall, assistant, tool, user
from llmkit.models.base import Model
from llmkit.models.scripted import ScriptedModel
from llmkit.rag.memory import (SUMMARY_TEMPLATE, BufferMemory, SummaryMemory, VectorMemory, WindowMemory,
                               turns)

from hash_embedder import HashEmbedder


def contents(msgs):
    return [m.content for m in msgs]


def test_buffer_persists_across_reopen_at_the_default_path(llmkit_home):
    with BufferMemory() as mem:
        mem.add_turn("c1", "Hi, I'm Ada.", "Hello Ada!")
        mem.add("c1", "What's my name?")
        mem.add("c1", assistant("Ada.", [ToolCall(id="t1", name="lookup", arguments={"who": "me"})]))
    assert (llmkit_home / "memory.db").is_file()
    with BufferMemory() as again:
        msgs = again.messages("c1")
        assert again.messages("unknown") == []
    assert [(m.role, m.content) for m in msgs] == [("user", "Hi, I'm Ada."), ("assistant", "Hello Ada!"),
                                                   ("user", "What's my name?"), ("assistant", "Ada.")]
    assert msgs[-1].tool_calls[0].arguments == {"who": "me"}  # the whole Message round-trips


def test_a_stored_turn_survives_a_crash(tmp_path):
    path = tmp_path / "mem.db"
    code = textwrap.dedent(f"""
        import os
        from llmkit.rag.memory import BufferMemory
        mem = BufferMemory(path={str(path)!r})
        mem.add_turn("c", "remember 42", "noted")
        os._exit(9)  # no close(), no atexit: the process just dies
    """)
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    with BufferMemory(path=path) as mem:
        assert contents(mem.messages("c")) == ["remember 42", "noted"]


def test_conversations_are_isolated_and_cleared_one_at_a_time(tmp_path):
    with BufferMemory(path=tmp_path / "m.db") as mem:
        mem.add_turn("alice", "a1", "r1")
        mem.add_turn("bob", "b1", "r2")
        mem.add_turn("alice", "a2", "r3")
        assert contents(mem.messages("alice")) == ["a1", "r1", "a2", "r3"]
        assert contents(mem.messages("bob")) == ["b1", "r2"]
        assert mem.conversations() == ["bob", "alice"]  # most recently active last
        assert mem.clear("alice") == 4
        assert mem.messages("alice") == [] and contents(mem.messages("bob")) == ["b1", "r2"]
        assert mem.conversations() == ["bob"]
        with pytest.raises(ConfigError, match="conversation_id"):
            mem.add("", "hi")


def test_window_keeps_the_last_k_turns_and_never_splits_a_tool_call(tmp_path):
    with WindowMemory(k=2, path=tmp_path / "m.db") as mem:
        for i in range(5):
            mem.add_turn("c", f"q{i}", f"a{i}")
        assert contents(mem.messages("c")) == ["q3", "a3", "q4", "a4"]
        call = ToolCall(id="t1", name="weather", arguments={"city": "Oslo"})
        mem.add("c", [user("weather?"), assistant("", [call]), tool("rain", "t1"), assistant("It rains.")])
        assert contents(mem.messages("c")) == ["q4", "a4", "weather?", "", "rain", "It rains."]
    with pytest.raises(ConfigError, match="k=0"):
        WindowMemory(k=0, path=tmp_path / "m.db")


def test_turns_start_at_each_user_message():
    rows = list(enumerate([assistant("hello"), user("q"), assistant("a"), tool("r", "t"), user("q2")]))
    assert [[n for n, _ in t] for t in turns(rows)] == [[0], [1, 2, 3], [4]]


def turn_of_8_tokens(i):
    # the scripted model counts words + 1 per message: 3 + 1 and 3 + 1
    return f"user says {i}", f"assistant answers {i}"


def test_summary_is_written_exactly_when_the_turns_go_over_budget(tmp_path):
    path = tmp_path / "m.db"
    m = ScriptedModel(["Ada said 0.", "Ada said 0 and 1."])
    mem = SummaryMemory(m, max_tokens=16, path=path)
    for i in range(2):
        mem.add_turn("c", *turn_of_8_tokens(i))
    assert m.calls == [] and contents(mem.messages("c")) == [*turn_of_8_tokens(0), *turn_of_8_tokens(1)]  # 16: at budget

    mem.add_turn("c", *turn_of_8_tokens(2))  # 24 > 16: the oldest turn is folded, 16 remain
    assert len(m.calls) == 1
    prompt = m.prompts[0]
    assert "User: user says 0\nAssistant: assistant answers 0" in prompt and "says 1" not in prompt
    assert "(none yet)" in prompt and prompt.startswith(SUMMARY_TEMPLATE.split("\n")[0])
    msgs = mem.messages("c")
    assert (msgs[0].role, msgs[0].content) == ("system", "Summary of the earlier conversation:\nAda said 0.")
    assert contents(msgs[1:]) == [*turn_of_8_tokens(1), *turn_of_8_tokens(2)]

    mem.add_turn("c", *turn_of_8_tokens(3))  # the running summary is updated, not rewritten from scratch
    assert len(m.calls) == 2 and "Ada said 0." in m.prompts[1] and "says 1" in m.prompts[1]
    assert "says 0" not in m.prompts[1].split("New lines")[1]
    mem.close()

    again = SummaryMemory(ScriptedModel([]), max_tokens=16, path=path)  # an empty script: a call would raise
    msgs = again.messages("c")
    assert msgs[0].content.endswith("Ada said 0 and 1.") and contents(msgs[1:]) == [*turn_of_8_tokens(2),
                                                                                  *turn_of_8_tokens(3)]
    assert len(BufferMemory(path=path).messages("c")) == 8  # the log itself keeps every turn


def test_summary_keeps_the_last_turn_even_alone_over_budget_and_is_traced(tmp_path):
    m = ScriptedModel(["short summary"])
    with SummaryMemory(m, max_tokens=3, path=tmp_path / "m.db") as mem:
        mem.add_turn("c", "one two three four", "five six")
        assert m.calls == []  # a single turn is never folded
        mem.add_turn("c", "seven eight nine ten", "eleven")
        assert contents(mem.messages("c")) == ["Summary of the earlier conversation:\nshort summary",
                                               "seven eight nine ten", "eleven"]
    span = tracing.TraceStore().list(name_like="rag.memory.summarize")[0]
    assert span["attributes"]["llmkit.memory.folded_messages"] == 2
    assert span["attributes"]["llmkit.memory.summary"] == "short summary"


class NoTokenizer(Model):
    provider = "plain"

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        return Completion(text="sum", finish_reason="stop")


def test_summary_counts_approximately_without_a_tokenizer(tmp_path):
    with SummaryMemory(NoTokenizer("x"), max_tokens=10, path=tmp_path / "m.db") as mem:
        assert mem.count_tokens([user("abcdefgh abc, d")]) == 4 + 4  # abcdefgh|abc|,|d plus 4 per message
        with pytest.raises(ConfigError, match="placeholder"):
            SummaryMemory(NoTokenizer("x"), template="{history}", path=tmp_path / "m.db")


def test_vector_memory_recalls_the_relevant_old_turn(tmp_path):
    emb = HashEmbedder()
    with VectorMemory(emb, k=1, recent=1, path=tmp_path / "m.db") as mem:
        mem.add_turn("c", "my dog is called Rex", "Rex is a fine name for a dog")
        mem.add_turn("c", "the weather in Oslo is rainy", "take an umbrella")
        mem.add_turn("c", "I like pasta with tomato sauce", "a classic")
        mem.add_turn("c", "tell me a joke", "why did the chicken cross the road")
        mem.add_turn("other", "my cat is called Tom", "nice")  # another conversation: never recalled here
        msgs = mem.messages("c", query="what is the name of my dog")
        assert contents(msgs) == ["my dog is called Rex", "Rex is a fine name for a dog",
                                  "tell me a joke", "why did the chicken cross the road"]
        assert contents(mem.messages("c", query="is it rainy in Oslo"))[:2] == ["the weather in Oslo is rainy",
                                                                               "take an umbrella"]
        mem.add("c", "should the pasta have tomato sauce")  # no query: the last user message asks
        assert contents(mem.messages("c")) == ["I like pasta with tomato sauce", "a classic",
                                               "should the pasta have tomato sauce"]


def test_vector_memory_embeds_turns_stored_by_another_memory(tmp_path):
    path = tmp_path / "m.db"
    with BufferMemory(path=path) as plain:
        plain.add_turn("c", "the secret word is banana", "ok")
        plain.add_turn("c", "unrelated chatter here", "sure")
        plain.add_turn("c", "more chatter", "fine")
    with VectorMemory(HashEmbedder(), k=1, recent=1, min_score=0.3, path=path) as mem:
        assert contents(mem.messages("c", query="what is the secret word"))[:2] == ["the secret word is banana", "ok"]
        assert contents(mem.messages("c", query="zzz qqq")) == ["more chatter", "fine"]  # below min_score: none
