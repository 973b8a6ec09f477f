"""rag/rerank.py: LLM rerankers (pointwise by yes-probability, listwise by a validated ranking) and
the cross-encoder, plus answer(rerank=...). Scripted models reply with chosen log-probabilities;
the cross-encoder is a tiny random BERT saved in the test (no cross-encoder ships offline here)."""
import math

import pytest

from llmkit.core import tracing
from llmkit.core.errors import ConfigError
from llmkit.core.types import Completion, TokenLogprob
from llmkit.models.scripted import ScriptedModel
from llmkit.rag import Document, KnowledgeBase, answer, make_splitter
from llmkit.rag.rerank import (LISTWISE_TEMPLATE, POINTWISE_TEMPLATE, CrossEncoderReranker, LLMReranker,
                               as_permutation, yes_probability)
from llmkit.rag.stores import Hit

from hash_embedder import HashEmbedder

PASSAGES = ["Bananas are a good source of potassium.", "Paris is the capital of France.",
            "The Great Wall is in China."]
Q = "What is the capital of France?"


def hits_of(texts):
    return [Hit(t, f"s{i}", 0.1 * (3 - i), {}, f"c{i}") for i, t in enumerate(texts)]


def lp(token, logprob, **top):
    """A Completion whose first token is ``token``, with ``top`` alternatives (name -> logprob)."""
    alts = sorted([(token, logprob), *top.items()], key=lambda kv: -kv[1])
    return Completion(text=token, finish_reason="length", logprobs=[TokenLogprob(token=token, logprob=logprob, top=alts)])


# ------------------------------------------------------------------ listwise

def test_as_permutation_repairs_a_ranking():
    assert as_permutation([3, 1, 2], 3) == [2, 0, 1]
    assert as_permutation([2, 2], 3) == [1, 0, 2]  # repeats dropped, the rest appended in order
    assert as_permutation([9, 0, True, "1", 3], 3) == [2, 0, 1]  # out of range and non-integers ignored
    assert as_permutation([], 2) == [0, 1]


def test_listwise_orders_by_the_models_array():
    m = ScriptedModel("[2, 2]")  # valid JSON for the schema, not a permutation: repaired
    out = LLMReranker(m, mode="listwise").rerank(Q, hits_of(PASSAGES))
    assert [x.chunk_id for x in out] == ["c1", "c0", "c2"]
    assert [x.score for x in out] == pytest.approx([1, 1 / 2, 1 / 3])
    prompt = m.prompts[0]
    assert prompt.startswith(LISTWISE_TEMPLATE.split("{")[0] + "3 passages")
    assert "[2] Paris is the capital of France." in prompt and '"maximum": 3' in prompt


def test_listwise_reasks_when_a_number_is_out_of_range():
    m = ScriptedModel(["[7, 1]", "[3]"])  # 7 fails the schema: the model is shown the error and asked again
    out = LLMReranker(m, mode="listwise").rerank(Q, hits_of(PASSAGES), k=2)
    assert [x.chunk_id for x in out] == ["c2", "c0"] and len(m.calls) == 2
    assert "maximum" in m.prompts[1] or "7" in m.prompts[1]


# ------------------------------------------------------------------ pointwise

def test_yes_probability():
    assert yes_probability([TokenLogprob(token="Yes", logprob=-0.2, top=[("Yes", -0.2), ("No", -1.8)])]) == \
        pytest.approx(1 / (1 + math.exp(-1.6)))
    both = [TokenLogprob(token=" yes", logprob=math.log(0.3), top=[("YES", math.log(0.1)), ("No", math.log(0.2))])]
    assert yes_probability(both) == pytest.approx(0.4 / 0.6)  # case and spaces folded, variants summed
    no_no = [TokenLogprob(token="Yes", logprob=-0.1, top=[("Yes", -0.1), ("The", -3.0)])]
    assert yes_probability(no_no) == pytest.approx(1 / (1 + math.exp(-2.9)))  # "no" at most the smallest shown
    assert yes_probability([TokenLogprob(token="The", logprob=-0.1, top=[("A", -2.0)])]) is None
    assert yes_probability(None) is None


def test_pointwise_orders_by_yes_probability():
    replies = {PASSAGES[0]: lp("No", -0.1, Yes=-3.0), PASSAGES[1]: lp("Yes", -0.3, No=-1.5),
               PASSAGES[2]: lp("No", -0.5, Yes=-1.0)}
    m = ScriptedModel(lambda msgs, tools: next(r for p, r in replies.items() if p in msgs[-1].content), repeat=True)
    out = LLMReranker(m).rerank(Q, hits_of(PASSAGES), k=2)
    assert [x.chunk_id for x in out] == ["c1", "c2"]
    assert [x.score for x in out] == pytest.approx([1 / (1 + math.exp(-1.2)), 1 / (1 + math.exp(0.5))])
    assert m.prompts[0] == POINTWISE_TEMPLATE.format(question=Q, passage=PASSAGES[0])
    s = m.calls[0][1]
    assert (s.logprobs, s.top_logprobs, s.max_tokens, s.temperature) == (True, 20, 1, 0)


def test_pointwise_falls_back_to_choose_without_logprobs():
    class NoLogprobs(ScriptedModel):
        supported = ScriptedModel.supported - {"logprobs", "top_logprobs"}

    m = NoLogprobs(["no", "yes", "no"])
    out = LLMReranker(m).rerank(Q, hits_of(PASSAGES))
    assert [(x.chunk_id, x.score) for x in out] == [("c1", 1.0), ("c0", 0.0), ("c2", 0.0)]
    assert all(s.logprobs is None for _, s, _ in m.calls) and "yes" in m.prompts[0] and len(m.calls) == 3
    # a backend that accepts logprobs but returns none: one logprob call, then the choice
    m = ScriptedModel(["Yes", "yes"])
    assert LLMReranker(m).rerank(Q, hits_of(PASSAGES[:1]))[0].score == 1.0 and len(m.calls) == 2


def test_rerank_is_traced_and_checks_its_arguments():
    LLMReranker(ScriptedModel("[1, 2]"), mode="listwise").rerank(Q, hits_of(PASSAGES[:2]))
    [span] = [s for s in tracing.TraceStore().list(limit=20) if s["name"] == "rag.rerank"]
    assert span["attributes"]["llmkit.rag.reranker"] == "llm-listwise"
    assert span["attributes"]["llmkit.rag.hit_ids"] == ["c0", "c1"]
    with pytest.raises(ConfigError, match="mode"):
        LLMReranker(ScriptedModel(), mode="pairwise")
    with pytest.raises(ConfigError, match="k="):
        LLMReranker(ScriptedModel()).rerank(Q, [], k=0)


# ------------------------------------------------------------------ answer(rerank=...)

FACTS = {f"mem:{i}": t for i, t in enumerate(
    ["Paris is the capital of France.", "Berlin is the capital of Germany.", "Rome is the capital of Italy.",
     "Madrid is the capital of Spain.", "Boil pasta for nine minutes."])}


@pytest.fixture
def kb(tmp_path):
    splitter = make_splitter("recursive", chunk_size=200, chunk_overlap=0, tokens=len)
    with KnowledgeBase(tmp_path / "kb.db", embedder=HashEmbedder(), splitter=splitter) as kb:
        kb.add_documents([Document(t, {"source": s}) for s, t in FACTS.items()])
        yield kb


def test_answer_reranks_the_candidates_down_to_k(kb):
    retrieved = kb.search("capital", k=4, mode="bm25")
    assert len(retrieved) == 4
    m = ScriptedModel(["[4, 3]", "Madrid [1]."])  # the ranking, then the answer
    a = answer(m, kb, "capital", k=2, mode="bm25", rerank=LLMReranker(m, mode="listwise"), candidates=4, reorder=False)
    assert [x.chunk_id for x in a.hits] == [retrieved[3].chunk_id, retrieved[2].chunk_id]
    assert a.citations[0].chunk_id == retrieved[3].chunk_id
    assert m.prompts[0].count("capital of") == 4  # all four candidates went to the reranker
    with pytest.raises(ConfigError, match="candidates"):
        answer(m, kb, "capital", candidates=10)


def test_answer_defaults_to_four_k_candidates_for_the_reranker(kb):
    seen = []

    def retrieve(q, k):
        seen.append(k)
        return kb.search(q, k=k, mode="bm25")

    m = ScriptedModel(["[1]", "ok [1]"])
    answer(m, kb, "capital", k=1, retrieve=retrieve, rerank=LLMReranker(m, mode="listwise"))
    assert seen == [20]  # max(20, 4 * k)
    spans = {s["name"]: s for s in tracing.TraceStore().list(limit=20)}
    assert spans["rag.rerank"]["parent_id"] == spans["rag.retrieve"]["span_id"]


# ------------------------------------------------------------------ cross-encoder

@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A randomly initialised 1-layer BERT with a 1-label head and the embedded MiniLM's tokenizer,
    saved like any CrossEncoder: it exercises the loading and scoring path, not relevance."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from llmkit.rag.embedders import embedded_minilm

    path = tmp_path_factory.mktemp("ce") / "tiny-cross-encoder"
    tok = AutoTokenizer.from_pretrained(str(embedded_minilm()))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1, initializer_range=0.2)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model, tok


def test_cross_encoder_scores_match_the_model_run_by_hand(tiny_cross_encoder):
    import torch

    path, model, tok = tiny_cross_encoder
    texts = PASSAGES + ["France has many cities.", "A capital letter starts a sentence."]
    out = CrossEncoderReranker(path).rerank(Q, hits_of(texts), k=4)
    with torch.no_grad():
        logits = model(**tok([Q] * len(texts), texts, padding=True, return_tensors="pt")).logits[:, 0]
    expected = torch.sigmoid(logits).tolist()  # CrossEncoder's default activation for one label
    order = sorted(range(len(texts)), key=lambda i: -expected[i])[:4]
    assert [x.chunk_id for x in out] == [f"c{i}" for i in order]
    assert [x.score for x in out] == pytest.approx([expected[i] for i in order], abs=1e-5)
    assert len({round(x, 4) for x in expected}) == len(texts)  # distinct scores: the order means something
    assert order != [0, 1, 2, 3]  # and the reranker did reorder


def test_cross_encoder_that_is_not_on_disk_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="never downloads"):
        CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # not in this machine's HF cache
    with pytest.raises(ConfigError, match="no cross-encoder"):
        CrossEncoderReranker(tmp_path / "missing")


# ------------------------------------------------------------------ the embedded model

CASES = [  # (question, passages, index of the one that answers it): the answer sits at each position
    ("What is the capital of France?", PASSAGES, 1),
    ("How many legs does a spider have?", ["A spider has eight legs.", "Rome is in Italy.",
                                           "Python is a programming language."], 0),
    ("When did World War II end?", ["Cats sleep a lot.", "Water boils at 100 degrees Celsius.",
                                    "World War II ended in 1945."], 2),
    ("What do bees make?", ["Bees make honey.", "The moon orbits the Earth.", "Cars need fuel."], 0),
    ("What is the boiling point of water?", ["The Eiffel Tower is in Paris.",
                                             "Water boils at 100 degrees Celsius at sea level.", "Dogs are loyal."], 1),
    ("Who wrote Romeo and Juliet?", ["The Pacific is the largest ocean.", "Mount Everest is the highest mountain.",
                                     "William Shakespeare wrote Romeo and Juliet."], 2),
    ("What color is the sky on a clear day?", ["The sky is blue on a clear day.", "Apples grow on trees.",
                                               "Gold is a metal."], 0),
    ("What is the largest planet in the solar system?", ["Tokyo is a big city.",
                                                         "Jupiter is the largest planet in the solar system.",
                                                         "Milk is white."], 1),
]


@pytest.mark.integration
def test_embedded_model_pointwise_puts_the_answering_passage_first(embedded):
    # SmolLM2-135M answers "No" to nearly every passage (P(yes) ~0.02-0.2), but P(yes) is higher
    # for the passage that answers: measured with POINTWISE_TEMPLATE, 8 of these 8 first, some by
    # margins of ~0.001, which batch-shape rounding can flip (6 of 8 seen with the prefix cache off).
    # So: France (margin ~0.03) must come first, and at least 6 of 8 overall (chance alone gets 6 of
    # 8 about once in 50, with France first once in 150; a position bias cannot, the answers move).
    r = LLMReranker(embedded)
    firsts = [r.rerank(q, hits_of(ps))[0].chunk_id == f"c{gold}" for q, ps, gold in CASES]
    assert firsts[0], "the passage naming the capital of France should rank first"
    assert sum(firsts) >= 6, firsts
