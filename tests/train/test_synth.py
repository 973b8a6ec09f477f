"""Synthetic data (train/synth/): Self-Instruct, Evol-Instruct and QA generation driven by scripted
models (the prompts sent, messy replies parsed, the rejection rules), the judge filter, near-duplicate
removal checked against exact Jaccard, the JSONL written, the CLI; one integration test with the
embedded model writing one QA pair from a two-paragraph knowledge base."""
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
import typer
from hash_embedder import HashEmbedder
from typer.testing import CliRunner

import llmkit
from llmkit.core.errors import ConfigError
from llmkit.core.types import Completion
from llmkit.models.scripted import ScriptedModel
from llmkit.train import synth
from llmkit.prompts.templates import render
from llmkit.train.synth.common import _options
from llmkit.train.synth.config import (
    EvolConfig,
    FilterConfig,
    QAConfig,
    SelfInstructConfig,
)

SEEDS = ["Write a haiku about autumn rain.", "List three uses of baking soda.",
         "Translate 'thank you' into Spanish.", "Explain why the sky is blue to a child."]

EIFFEL = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after "
          "the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. It was the "
          "entrance arch to the 1889 World's Fair and is 330 metres tall.")
BEES = ("Honeybees live in colonies with one queen, thousands of female workers and a few hundred male drones. "
        "Workers collect nectar and pollen from flowers and turn the nectar into honey, which the colony eats in "
        "winter. A worker bee lives about six weeks in summer.")


def user_of(row):
    return row["messages"][0]["content"]


# --- Self-Instruct ---------------------------------------------------------------------------------

def test_self_instruct_shows_the_seed_tasks_and_parses_a_messy_reply():
    messy = ("Sure! Here are four new tasks:\n\n"
             "Task 5: **Write a limerick about a sleepy cat.**\n"
             "Task 6: Describe the picture of a sunset.\n"            # blocked word: a text model cannot see it
             "Task 7: Write a limerick about a sleepy cat!\n"          # ROUGE-L 1.0 with task 5
             "Task 8: Sum 2 and 3.\nOutput: 5\n"                       # the model answered its own task
             "Task 9: ok\n"                                            # too short
             "Task 10: Translate 'thank you' into Spanish.")            # a seed task again
    m = ScriptedModel(lambda msgs, tools: messy if "Come up with" in msgs[-1].content
                      else f"Answer: {msgs[-1].content}", repeat=True)
    rows = synth.self_instruct(m, SEEDS, n=2, num_seeds=4)
    first = m.prompts[0]
    assert all(f": {s}" in first for s in SEEDS) and "numbered from Task 5" in first
    assert [user_of(r) for r in rows] == ["Write a limerick about a sleepy cat.", "Sum 2 and 3."]
    assert rows[1]["messages"][1] == {"role": "assistant", "content": "Answer: Sum 2 and 3."}
    assert m.prompts[1:] == ["Write a limerick about a sleepy cat.", "Sum 2 and 3."]   # each task asked as it is
    assert rows.rejected == Counter({"blocked_word": 1, "similar": 1})  # n=2 was reached before the rest
    assert rows[0]["meta"] == {"method": "self_instruct", "source": "model", "model": "scripted:scripted"}
    assert m.calls[0][1].temperature == 0.7 and m.calls[0][1].seed == 1 and m.calls[1][1].seed == 2

    cut = Completion(text="Task 5: Name a prime number.\nTask 6: Write a sonnet about", finish_reason="length")
    m = ScriptedModel(lambda msgs, tools: cut if "Come up with" in msgs[-1].content else "Seven.", repeat=True)
    rows = synth.self_instruct(m, SEEDS, n=1)
    assert [user_of(r) for r in rows] == ["Name a prime number."] and rows.rejected == Counter({"truncated": 1})


def test_self_instruct_mixes_in_its_own_tasks_and_stops_when_nothing_new_comes():
    replies = iter(["Task 5: Name the largest planet of the solar system.",
                    "Task 5: Name the largest planet in the solar system."])  # a near-copy from then on
    m = ScriptedModel(lambda msgs, tools: next(replies, "Task 5: Name the largest planet in our solar system.")
                      if "Come up with" in msgs[-1].content else "Jupiter.", repeat=True)
    rows = synth.self_instruct(m, SEEDS, n=5, num_seeds=3, num_machine=1, patience=3)
    assert len(rows) == 1 and rows.rejected["similar"] == 3
    task_prompts = [p for p in m.prompts if "Come up with" in p]
    assert len(task_prompts) == 4                       # one that added a row, then `patience` that added none
    assert "Name the largest planet of the solar system." in task_prompts[1]  # machine tasks join the examples
    assert re.findall(r"^Task (\d+): ", task_prompts[0], re.MULTILINE) == ["1", "2", "3"]   # num_seeds tasks shown


def test_instruction_filters_follow_the_paper():
    cfg = SelfInstructConfig()
    assert synth.instruction_problem("Write a poem.", cfg) is None
    assert synth.instruction_problem("Do it.", cfg) == "too_short"
    assert synth.instruction_problem(" ".join(["word"] * 151), cfg) == "too_long"
    assert synth.instruction_problem("Draw a map of France.", cfg) == "blocked_word"
    assert synth.instruction_problem("Please go to the shop for me.", cfg) == "blocked_word"  # a two-word entry
    assert synth.instruction_problem("Write a profile of a mapmaker.", cfg) is None           # whole words only
    assert synth.instruction_problem("(a) Write a poem.", cfg) == "starts_with_punctuation"
    assert synth.instruction_problem("Écris un poème sur la mer.", cfg) == "not_english"


def test_rouge_l_is_the_lcs_f_measure():
    assert synth.rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(2 * 5 / 12)
    assert synth.rouge_l("A b c d", "a, B!") == pytest.approx(2 * 2 / 6)     # ROUGE's tokens: case and punctuation go
    assert synth.rouge_l("a b c d e", "e d c b a") == pytest.approx(2 * 1 / 10)  # order matters (a subsequence)
    assert synth.rouge_l("x y", "") == 0.0 and synth.rouge_l("same words", "Same words.") == 1.0


# --- Evol-Instruct ---------------------------------------------------------------------------------

def evolver(answer="A careful answer with several concrete details about the topic."):
    """Rewrites by appending a clause; answers everything else."""
    def reply(msgs, tools):
        text = msgs[-1].content
        if "#The Given Prompt#:" in text:
            given = text.split("#The Given Prompt#:\n", 1)[1].split("\n\n#The", 1)[0]
            return f"#The Rewritten Prompt#:\n{given.rstrip('.')} in under 50 words."
        return answer
    return reply


def test_evol_names_the_operation_and_evolves_the_evolved():
    m = ScriptedModel(evolver(), repeat=True)
    rows = synth.evol_instruct(m, ["Explain recursion."], rounds=2, operations=["constraints"])
    assert [user_of(r) for r in rows] == ["Explain recursion in under 50 words.",
                                          "Explain recursion in under 50 words in under 50 words."]
    sent = [p for p in m.prompts if "Prompt Rewriter" in p]
    assert synth.EVOL_METHODS["constraints"] in sent[0] and "Explain recursion." in sent[0]
    assert "Explain recursion in under 50 words." in sent[1]        # round 2 starts from round 1's result
    assert [(r["meta"]["operation"], r["meta"]["round"], r["meta"]["source"]) for r in rows] == \
        [("constraints", 1, "Explain recursion."), ("constraints", 2, "Explain recursion.")]

    m = ScriptedModel(["#The Created Prompt#: Explain tail-call elimination in Scheme.", "It reuses the frame."])
    rows = synth.evol_instruct(m, ["Explain recursion."], rounds=1, operations=["breadth"])
    assert "Prompt Creator" in m.prompts[0] and user_of(rows[0]) == "Explain tail-call elimination in Scheme."
    assert rows[0]["meta"]["operation"] == "breadth"


def test_each_operation_sends_its_own_method():
    for op in ("constraints", "deepen", "concretize", "reasoning"):
        m = ScriptedModel(evolver(), repeat=True)
        synth.evol_instruct(m, ["Explain recursion."], rounds=1, operations=[op])
        assert synth.EVOL_METHODS[op] in m.prompts[0]
        assert all(t not in m.prompts[0] for o, t in synth.EVOL_METHODS.items() if o != op)


def test_clean_evolved_reads_messy_replies():
    assert synth.clean_evolved("Sure! Here is the rewritten prompt:\n\n\"Write a haiku about rain in May.\"") == \
        "Write a haiku about rain in May."
    assert synth.clean_evolved("**#Rewritten Prompt#:** Sort the list [3, 1] in descending order.") == \
        "Sort the list [3, 1] in descending order."
    assert synth.clean_evolved("Write a function that\nreturns the sum.") == "Write a function that\nreturns the sum."


@pytest.mark.parametrize("evolved, response, why", [
    ("Explain recursion!", None, "unchanged"),                                     # same words
    ("EXPLAIN   recursion.", None, "unchanged"),
    ("", None, "empty"),
    ("Rewrite the given prompt about recursion with examples.", None, "copied_prompt"),
    ("#The Rewritten Prompt# Explain recursion with examples.", None, "copied_prompt"),
    ("Explain recursion with two examples.", "Sorry, I cannot help with that.", "refused"),
    ("Explain recursion with two examples.", "I can't do that.", "refused"),
    ("Explain recursion with two examples.", "Sorry for the delay! " + "Recursion means a function calls "
     "itself on a smaller input. " * 10, None),                                    # "sorry" in a long answer is fine
    ("Explain recursion with two examples.", "It is. And so, the... it is!", "stop_words_only"),
    ("Explain recursion with two examples.", "   ", "empty_response"),
    ("Explain recursion with two examples.", "A function calling itself, e.g. factorial.", None),
])
def test_evolution_failure_rules(evolved, response, why):
    assert synth.evolution_failure("Explain recursion.", evolved, response) == why


def test_failed_evolutions_are_dropped_and_their_instruction_tries_again():
    replies = iter(["#The Rewritten Prompt#: Explain recursion.",                   # round 1: unchanged
                    "#The Rewritten Prompt#: Explain recursion with a Python example.",  # round 2
                    "Sorry, I can't."])                                             # its answer: refused
    m = ScriptedModel(lambda msgs, tools: next(replies), repeat=True)
    rows = synth.evol_instruct(m, ["Explain recursion."], rounds=2, operations=["deepen"])
    assert rows == [] and rows.rejected == Counter({"unchanged": 1, "refused": 1})
    assert "#The Given Prompt#:\nExplain recursion.\n" in m.prompts[1]   # round 2 evolves the original again
    assert len(m.calls) == 3        # the unchanged rewrite was never sent to be answered


def test_answers_cut_by_max_tokens_are_dropped_unless_kept():
    cut = Completion(text="Recursion is when a function", finish_reason="length")
    for keep, expect in ((False, 0), (True, 1)):
        m = ScriptedModel(["#The Rewritten Prompt#: Explain recursion with an example.", cut])
        rows = synth.evol_instruct(m, ["Explain recursion."], rounds=1, keep_truncated=keep, max_tokens=6)
        assert len(rows) == expect and rows.rejected == Counter({} if keep else {"truncated": 1})
        assert m.calls[1][1].max_tokens == 6


def test_equality_check_asks_the_model():
    m = ScriptedModel(["#The Rewritten Prompt#: Explain recursion, please.", "Equal",
                       "#The Rewritten Prompt#: Explain recursion and its base case.", "Not Equal", "An answer here."])
    rows = synth.evol_instruct(m, ["Explain recursion."], rounds=2, operations=["deepen"], equality_check=True)
    assert [user_of(r) for r in rows] == ["Explain recursion and its base case."]
    assert rows.rejected == Counter({"judged_equal": 1})
    assert "The second prompt: Explain recursion, please." in m.prompts[1]


# --- QA from documents -----------------------------------------------------------------------------

def qa_reply(*pairs):
    return [json.dumps({"question": q, "answer": a}) for q, a in pairs]


def test_qa_pairs_are_grounded_in_their_chunk(capsys):
    m = ScriptedModel(qa_reply(
        ("What is the answer to this question?", "Yes"),                         # off topic
        ("Who designed the Eiffel Tower?", "The Nile flows into the sea"),       # unsupported by the chunk
        ("What is the Eiffel Tower?", "The Eiffel Tower"),                       # the answer adds nothing
        ("Who is the Eiffel Tower named after?", "the engineer Gustave Eiffel"),
        ("Who is the Eiffel Tower named after?", "Gustave Eiffel"),              # asked already
        ("How tall is the Eiffel Tower?", "330 metres")), repeat=False)
    rows = synth.qa_from_documents(m, [EIFFEL], n=2, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("qa ") and " 2/2 " in err                   # the bar, on stderr
    assert [(user_of(r), r["messages"][1]["content"]) for r in rows] == [
        ("Who is the Eiffel Tower named after?", "the engineer Gustave Eiffel"),
        ("How tall is the Eiffel Tower?", "330 metres")]
    assert rows.rejected == Counter({"off_topic": 1, "unsupported": 1, "answer_in_question": 1, "duplicate": 1})
    assert EIFFEL in m.prompts[0] and "Ask something other than" not in m.prompts[0]
    assert "- Who is the Eiffel Tower named after?" in m.prompts[-1]   # later prompts list what was asked
    assert rows[0]["meta"]["support"] == 1.0 and rows[0]["meta"]["source"] == "text:0"
    assert m.calls[0][1].max_tokens == 200 + 300 + 32                  # the JSON always fits


def test_qa_schema_is_enforced_and_copying_questions_are_dropped():
    copied = "What is the Eiffel Tower, a wrought-iron lattice tower on the Champ de Mars in Paris?"
    m = ScriptedModel(qa_reply((copied, "Paris"), ("Tell me the height.", "330 metres"),   # not a wh-question
                               ("When was the tower built?", "The company of Gustave Eiffel built it from 1887"),
                               ("Where is the Eiffel Tower?", "on the Champ de Mars in Paris")))
    rows = synth.qa_from_documents(m, [EIFFEL], n=1, max_answer_chars=40)
    assert [user_of(r) for r in rows] == ["Where is the Eiffel Tower?"]
    assert rows.rejected == Counter({"copies_text": 1})
    assert "Your reply was not valid" in m.prompts[2]               # the pattern failed: re-asked with the errors
    assert "$.answer: 'The company of Gustave Eiffel built it from 1887' is too long" in m.prompts[3]  # the limit
    assert synth.qa_problem("When was it built?", "x" * 5 + " 1887 " + "tower " * 10, EIFFEL,
                            QAConfig(max_answer_chars=30)) == "answer_cut"   # an answer the limit ended


def test_qa_with_context_and_from_a_knowledge_base_and_files(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "eiffel.txt").write_text(EIFFEL)
    (tmp_path / "docs" / "bees.md").write_text(BEES)
    kb = llmkit.rag.KnowledgeBase(tmp_path / "kb.db", embedder=HashEmbedder())
    kb.ingest(tmp_path / "docs")
    kb.close()

    def answer(msgs, tools):
        text = msgs[-1].content
        return json.dumps({"question": "Who is the tower named after?", "answer": "Gustave Eiffel"} if "Eiffel" in text
                          else {"question": "How long does a worker bee live?", "answer": "about six weeks"})

    for source in (str(tmp_path / "kb.db"), tmp_path / "docs", llmkit.rag.KnowledgeBase(tmp_path / "kb.db")):
        rows = synth.qa_from_documents(ScriptedModel(answer, repeat=True), source, n=2, with_context=True)
        assert sorted(os.path.basename(r["meta"]["source"]) for r in rows) == ["bees.md", "eiffel.txt"]
        for r in rows:
            chunk = EIFFEL if "eiffel" in r["meta"]["source"] else BEES
            assert user_of(r) == render(synth.QA_CONTEXT_TEMPLATE, chunk=chunk,
                                              question=r["messages"][0]["content"].split("Question: ")[1])
            assert chunk in user_of(r)
    with pytest.raises(ConfigError, match="no knowledge base, file or folder 'nowhere'"):
        synth.qa_from_documents(ScriptedModel([]), "nowhere", n=1)
    with pytest.raises(ConfigError, match="min_chunk_words=20"):
        synth.qa_from_documents(ScriptedModel([]), ["Too short."], n=1)


# --- filters ---------------------------------------------------------------------------------------

def rows_of(*pairs, **meta):
    return [synth.chat_row(q, a, **meta) for q, a in pairs]


def test_judge_filter_keeps_rows_by_score():
    rows = rows_of(("Capital of France?", "Paris."), ("2 + 2?", "5"), ("Name a prime.", "7"), method="x")
    scores = {"Paris.": 5, "5": 1, "7": 4}

    def judge(msgs, tools):
        answer = msgs[-1].content.split("<answer>\n", 1)[1].split("\n</answer>", 1)[0]
        return json.dumps({"reasoning": f"judged {answer}", "score": scores[answer]})

    m = ScriptedModel(judge, repeat=True)
    kept = synth.judge_filter(m, rows, threshold=4)
    assert [r["messages"][1]["content"] for r in kept] == ["Paris.", "7"]
    assert [r["meta"]["judge_score"] for r in kept] == [5, 4] and kept[0]["meta"]["method"] == "x"
    assert kept.rejected == Counter({"low_score": 1})
    assert "Capital of France?" in m.prompts[0] and synth.JUDGE_RUBRIC in m.prompts[0]
    assert m.calls[0][1].temperature == 0 and "meta" not in rows[1] or "judge_score" not in rows[1]["meta"]
    assert len(synth.judge_filter(ScriptedModel(judge, repeat=True), rows, threshold=5)) == 1
    with pytest.raises(ConfigError, match="threshold=6 must be a number within the judge's scale 1-5"):
        synth.judge_filter(m, rows, threshold=6)
    bad = ScriptedModel(["not json"] * 3)
    assert synth.judge_filter(bad, rows[:1]).rejected == Counter({"judge_error": 1})


def sentence(rng, n=50):
    vocab = [f"w{i}" for i in range(400)]
    return " ".join(rng.choice(vocab) for _ in range(n))


def test_dedup_drops_a_changed_word_copy_and_keeps_distinct_rows():
    rng = random.Random(0)
    a, b = sentence(rng), sentence(rng)
    words = a.split()
    one_word = " ".join(words[:25] + ["changed"] + words[26:])
    rows = rows_of(("Summarise:", a), ("Summarise:", b), ("Summarise:", one_word), ("Summarise:", a))
    kept = synth.dedup(rows)
    assert kept == rows[:2] and kept.rejected == Counter({"near_duplicate": 2})
    # 51 words with bigrams: (L - 2k + 1) / (L + 1) = 48 / 52 ≥ 0.9; with 4-word shingles (45 / 53) it is a new row
    assert synth.jaccard(synth.shingles(_text(rows[0]), 2), synth.shingles(_text(rows[2]), 2)) == pytest.approx(48 / 52)
    assert synth.dedup(rows, shingle_size=4) == [rows[0], rows[1], rows[2]]
    assert synth.dedup(rows, on="user") == rows[:1]                     # the same question four times


def _text(row):
    return "\n".join(m["content"] for m in row["messages"])


def test_minhash_dedup_matches_exact_jaccard():
    rng = random.Random(1)
    texts = [sentence(rng, rng.randint(20, 80)) for _ in range(60)]
    for _ in range(120):  # copies with 1-4 words changed, some duplicates, some not
        ws = rng.choice(texts).split()
        for _ in range(rng.randint(1, 4)):
            ws[rng.randrange(len(ws))] = f"x{rng.randrange(1000)}"
        texts.append(" ".join(ws))
    rng.shuffle(texts)
    rows = rows_of(*[("Q", t) for t in texts])

    def shingle_set(t):  # written out here, independently of synth.shingles
        ws = ("q\n" + t).lower().replace("\n", " ").split()
        return {(ws[i], ws[i + 1]) for i in range(len(ws) - 1)}

    sets, kept = [shingle_set(t) for t in texts], []
    for i, s in enumerate(sets):
        if all(len(s & sets[j]) / len(s | sets[j]) < 0.9 for j in kept):
            kept.append(i)
    assert 60 <= len(kept) < len(texts) - 20      # the test has duplicates to find and near-misses to keep
    assert synth.dedup(rows, 0.9, method="exact") == [rows[i] for i in kept]
    assert synth.dedup(rows, 0.9) == [rows[i] for i in kept]               # MinHash LSH + exact check: the same

    sig = synth.minhash(texts[:40], num_perm=256)
    for i in range(0, 40, 2):
        exact = len(sets[i] & sets[i + 1]) / len(sets[i] | sets[i + 1])
        estimate = float((sig[i] == sig[i + 1]).mean())
        exact_words = synth.jaccard(synth.shingles(texts[i]), synth.shingles(texts[i + 1]))
        assert abs(estimate - exact_words) < 0.1 and exact_words == pytest.approx(exact, abs=0.1)


def test_dedup_with_an_embedder_catches_reordered_words():
    rows = rows_of(("Q", "the dog bit the man in the park today"), ("Q", "the man bit the dog today in the park"),
                   ("Q", "a completely different answer about cooking pasta"))
    assert synth.dedup(rows) == rows                                       # bigrams differ
    kept = synth.dedup(rows, embedder=HashEmbedder())                     # a bag of words: cosine 1.0
    assert kept == [rows[0], rows[2]] and kept.rejected == Counter({"similar_meaning": 1})


def test_filter_rows_runs_dedup_then_the_judge_and_keeps_the_counts():
    rows = synth.Rows(rows_of(("Q1?", "Answer one."), ("Q1?", "Answer one."), ("Q2?", "Answer two.")),
                      rejected=Counter({"similar": 3}))
    judge = ScriptedModel([json.dumps({"reasoning": "ok", "score": 5}), json.dumps({"reasoning": "bad", "score": 2})])
    kept = synth.filter_rows(rows, FilterConfig(judge_threshold=4), judge=judge)
    assert [r["messages"][1]["content"] for r in kept] == ["Answer one."] and len(judge.calls) == 2
    assert kept.rejected == Counter({"similar": 3, "near_duplicate": 1, "low_score": 1})
    with pytest.raises(ConfigError, match="no judge model"):
        synth.filter_rows(rows, FilterConfig(judge_threshold=4))


# --- files -----------------------------------------------------------------------------------------

def test_jsonl_is_written_atomically_and_loads_as_chat_rows(tmp_path, monkeypatch):
    rows = rows_of(("Capital of France?", "Paris — of course."), ("2 + 2?", "4"), method="qa", judge_score=5)
    path = synth.write_jsonl(rows, tmp_path / "out" / "train.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows and "—" in lines[0]        # UTF-8, not \u escapes
    assert synth.read_jsonl(path) == rows

    import datasets

    from llmkit.train.data import read_rows

    assert [(r["_format"], r["messages"]) for r in read_rows(path, "chat")] == \
        [("chat", r["messages"]) for r in rows]                                  # as `llmkit train sft` reads it
    ds = datasets.load_dataset("json", data_files=str(path), split="train")   # as TRL's SFT reads it
    assert ds["messages"] == [r["messages"] for r in rows]

    calls = iter(range(10))
    real = json.dumps
    monkeypatch.setattr(json, "dumps", lambda *a, **k: real(*a, **k) if next(calls) < 1 else 1 / 0)
    with pytest.raises(ZeroDivisionError):
        synth.write_jsonl(rows_of(("new", "rows"), ("more", "rows")), path)  # dies after one row
    monkeypatch.undo()
    assert synth.read_jsonl(path) == rows and os.listdir(path.parent) == ["train.jsonl"]  # old file, no temp left
    with pytest.raises(ConfigError, match="row 1: a row needs a user turn"):
        synth.write_jsonl([{"messages": [{"role": "user", "content": "no answer"}]}], tmp_path / "x.jsonl")


def test_bad_input_files_name_the_file_and_line(tmp_path):
    good = json.dumps(synth.chat_row("a", "b"))
    cases = {"empty.jsonl": ("\n\n", "empty.jsonl: the file is empty"),
             "broken.jsonl": (f"{good}\n{{\"messages\": [\n", "broken.jsonl:2: not valid JSON"),
             "notchat.jsonl": (f"{good}\n\n{json.dumps({'text': 'hi'})}\n", "notchat.jsonl:3: a row must be an object"),
             "roles.jsonl": (json.dumps({"messages": [{"role": "bot", "content": "x"}]}), "roles.jsonl:1: message 1 must")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(ConfigError, match=message):
            synth.read_jsonl(tmp_path / name)
    with pytest.raises(ConfigError, match="missing.jsonl: no such file"):
        synth.read_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "seeds.jsonl").write_text('"Write a poem."\n{"instruction": "Sum these.", "input": "1, 2"}\n'
                                          f'{good}\n{{"prompt": "Name a colour."}}\n42\n')
    with pytest.raises(ConfigError, match=r"seeds.jsonl:5: expected an instruction"):
        synth.read_instructions(tmp_path / "seeds.jsonl")
    (tmp_path / "seeds.jsonl").write_text('"Write a poem."\n{"instruction": "Sum these.", "input": "1, 2"}\n'
                                          f'{good}\n{{"prompt": "Name a colour."}}\n')
    assert synth.read_instructions(tmp_path / "seeds.jsonl") == ["Write a poem.", "Sum these.\n\n1, 2", "a",
                                                                  "Name a colour."]
    (tmp_path / "seeds.txt").write_text("Write a poem.\n\n  List primes.  \n")
    assert synth.read_instructions(tmp_path / "seeds.txt") == ["Write a poem.", "List primes."]


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="operations=.*unknown operation 'shorten'"):
        synth.evol_instruct(ScriptedModel([]), ["x"], operations=["shorten"])
    with pytest.raises(ConfigError, match="num_machine=9 cannot exceed num_seeds=8"):
        synth.self_instruct(ScriptedModel([]), SEEDS, num_machine=9)
    with pytest.raises(ConfigError, match="temperature=-1"):
        synth.qa_from_documents(ScriptedModel([]), [EIFFEL], temperature=-1)
    cfg = QAConfig(n=3, with_context=True)                   # options override a config's fields
    assert _options(QAConfig, cfg, {"n": None}, {"question_pattern": None}).model_dump() == \
        QAConfig(n=3, with_context=True, question_pattern=None).model_dump()
    assert EvolConfig().n is None and SelfInstructConfig().rouge_threshold == 0.7


# --- CLI -------------------------------------------------------------------------------------------

def cli():
    from llmkit.cli.synth_cmd import synth_app

    app = typer.Typer()
    app.add_typer(synth_app, name="synth")
    return app


def test_cli_filter_and_self_instruct(tmp_path, monkeypatch):
    rng = random.Random(2)
    a, b = sentence(rng), sentence(rng)
    synth.write_jsonl(rows_of(("Q", a), ("Q", b), ("Q", a.replace("w", "w", 1))), tmp_path / "in.jsonl")
    r = CliRunner().invoke(cli(), ["synth", "filter", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"wrote 2 rows to {tmp_path / 'out.jsonl'}; rejected: near_duplicate 1"
    assert [x["messages"][1]["content"] for x in synth.read_jsonl(tmp_path / "out.jsonl")] == [a, b]

    (tmp_path / "seeds.txt").write_text("\n".join(SEEDS))
    m = ScriptedModel(lambda msgs, tools: "Task 5: Name three primary colours.\nTask 6: Sort the list 3, 1, 2."
                      if "Come up with" in msgs[-1].content else "Done.", repeat=True)
    specs = []
    monkeypatch.setattr(llmkit, "model", lambda spec="", **kw: specs.append(spec) or m)
    r = CliRunner().invoke(cli(), ["synth", "self-instruct", str(tmp_path / "seeds.txt"), "-o", str(tmp_path / "si.jsonl"),
                                   "--n", "2", "-m", "scripted", "--temperature", "1.0", "--num-seeds", "2"])
    assert r.exit_code == 0, r.output
    assert specs == ["scripted"] and m.calls[0][1].temperature == 1.0
    assert [user_of(x) for x in synth.read_jsonl(tmp_path / "si.jsonl")] == ["Name three primary colours.",
                                                                            "Sort the list 3, 1, 2."]
    r = CliRunner().invoke(cli(), ["synth", "evol", str(tmp_path / "seeds.txt"), "-o", str(tmp_path / "e.jsonl"),
                                   "--num-seeds", "2"])
    assert r.exit_code != 0 and "No such option: --num-seeds" in r.output   # evol has its own flags


def test_cli_bad_files_fail_in_one_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps(synth.chat_row("a", "b")) + "\n{oops\n")
    (tmp_path / "empty.txt").write_text("")
    for args, message in [(["filter", str(tmp_path / "bad.jsonl")], f"{tmp_path / 'bad.jsonl'}:2: not valid JSON"),
                          (["self-instruct", str(tmp_path / "missing.txt")], f"{tmp_path / 'missing.txt'}: no such file"),
                          (["evol", str(tmp_path / "empty.txt")], f"{tmp_path / 'empty.txt'}: the file is empty"),
                          (["qa", "no-such-kb"], "no knowledge base, file or folder 'no-such-kb'")]:
        r = CliRunner().invoke(cli(), ["synth", *args, "-o", str(tmp_path / "out.jsonl")])
        assert r.exit_code != 0 and isinstance(r.exception, ConfigError) and message in str(r.exception), args
    assert not (tmp_path / "out.jsonl").exists()
    # through llmkit's real entry point (which prints llmkit errors in one line, exit 2), synth mounted on it
    code = ("import importlib, sys; M = importlib.import_module('llmkit.cli.main'); "
            "from llmkit.cli.synth_cmd import synth_app; "
            "M.app.add_typer(synth_app, name='synth-test'); sys.argv[0] = 'llmkit'; M.main()")
    p = subprocess.run([sys.executable, "-c", code, "synth-test", "filter", str(tmp_path / "bad.jsonl"), "-o",
                        str(tmp_path / "out.jsonl")], check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr == f"error: {tmp_path / 'bad.jsonl'}:2: not valid JSON " \
                                             f"(Expecting property name enclosed in double quotes at column 2)\n"


# --- the embedded model ----------------------------------------------------------------------------

@pytest.mark.integration
def test_embedded_model_writes_a_grounded_qa_pair(tmp_path, embedded):
    """One pair, a handful of llama.cpp calls: at temperature 0.2 about half the replies pass the
    grounding rules, so patience=8 fails about once in 500 runs while the usual run makes 1-3 calls."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "eiffel.txt").write_text(EIFFEL)
    (tmp_path / "docs" / "bees.txt").write_text(BEES)
    cfg = QAConfig(n=1, patience=8, temperature=0.2, max_question_chars=120, max_answer_chars=60)
    with llmkit.rag.KnowledgeBase(tmp_path / "tiny.db", embedder=HashEmbedder()) as kb:
        kb.ingest(tmp_path / "docs")
        chunk_ids = {h.chunk_id for h in kb.store.chunks()}
        rows = synth.qa_from_documents(embedded, kb, config=cfg)
    assert len(rows) == 1, rows.rejected
    assert sum(rows.rejected.values()) < cfg.patience                       # the calls it cost: at most 8
    [row] = synth.read_jsonl(synth.write_jsonl(rows, tmp_path / "qa.jsonl"))
    q, a = [m["content"] for m in row["messages"]]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert re.match(cfg.question_pattern, q) and len(q) <= 120 and 0 < len(a.strip()) <= 60, (q, a)  # the schema held
    chunk = {"eiffel.txt": EIFFEL, "bees.txt": BEES}[os.path.basename(row["meta"]["source"])]
    answer = [w for w in synth.words(a) if w not in synth.STOP_WORDS]
    support = sum(w in synth.words(chunk) for w in answer) / len(answer)
    assert support >= 0.6 and row["meta"]["support"] == round(support, 3), (q, a)   # grounded in its own chunk
    assert synth.qa_problem(q, a, chunk, cfg) is None and row["meta"]["chunk_id"] in chunk_ids
    assert row["meta"]["method"] == "qa_from_documents" and row["meta"]["model"].startswith("local:")
