"""rag/self_query.py: question → (semantic query, metadata filter) under a JSON Schema built from
the declared fields; the filter is checked again, then honoured by kb.search."""
import json

import pytest

from llmkit.core import tracing
from llmkit.core.errors import ConfigError, StructuredOutputError
from llmkit.models.scripted import ScriptedModel
from llmkit.rag import Document, KnowledgeBase, make_splitter
from llmkit.rag.self_query import (SELF_QUERY_TEMPLATE, MetadataField, SelfQuery, build_query, check_filter,
                                   filter_schema, self_query)
from llmkit.structured import JSONSchema
from llmkit.structured.constraints import Invalid

from hash_embedder import HashEmbedder

FIELDS = [MetadataField("genre", "string", "the film's genre", values=["comedy", "drama", "horror"]),
          MetadataField("year", int, "the year the film came out"),
          MetadataField("rating", "number", "average rating out of 10"),
          MetadataField("kids", bool, "suitable for children")]

FILMS = [("f:back", "A comedy about time travel and a DeLorean.", "comedy", 1985, 8.5, True),
         ("f:hot-tub", "A comedy about time travel in a hot tub.", "comedy", 2010, 6.4, False),
         ("f:palm", "A comedy about a time loop at a wedding.", "comedy", 2020, 7.4, False),
         ("f:looper", "A drama about time travel and hired killers.", "drama", 2012, 7.4, False),
         ("f:shining", "A horror film about a snowed-in hotel.", "horror", 1980, 8.4, False)]


@pytest.fixture
def kb(tmp_path):
    splitter = make_splitter("recursive", chunk_size=200, chunk_overlap=0, tokens=len)
    with KnowledgeBase(tmp_path / "films.db", embedder=HashEmbedder(), splitter=splitter) as kb:
        kb.add_documents([Document(text, {"source": s, "genre": g, "year": y, "rating": r, "kids": k})
                          for s, text, g, y, r, k in FILMS])
        yield kb


def reply(query, filter):
    return json.dumps({"query": query, "filter": filter})


def test_the_model_filter_is_used_and_search_honours_it(kb):
    filter = {"genre": {"$eq": "comedy"}, "year": {"$gt": 2005}}
    m = ScriptedModel([reply("time travel", filter)])
    r = self_query(m, kb, "Comedies after 2005 about time travel?", FIELDS, k=5, mode="dense")
    assert isinstance(r, SelfQuery) and (r.query, r.filter) == ("time travel", filter)
    assert {h.source for h in r.hits} == {"f:hot-tub", "f:palm"}  # the 1985 comedy and the drama are filtered out
    assert r.hits[0].source == "f:hot-tub"  # "time travel" ranks it above the time loop
    hits, query, got = r  # unpacks as a tuple
    assert (query, got, hits) == (r.query, r.filter, r.hits)
    unfiltered = kb.search("time travel", k=5, mode="dense")
    assert {h.source for h in unfiltered} > {h.source for h in hits}


def test_every_operator_reaches_the_store(kb):
    cases = [({"genre": {"$in": ["comedy", "drama"]}, "rating": {"$gte": 7.4, "$lt": 8}}, {"f:palm", "f:looper"}),
             ({"genre": {"$nin": ["comedy"]}, "year": {"$lte": 1990}}, {"f:shining"}),
             ({"kids": {"$eq": True}}, {"f:back"}),
             ({"genre": {"$ne": "comedy"}, "kids": {"$eq": False}}, {"f:looper", "f:shining"}),
             ({}, {s for s, *_ in FILMS})]
    m = ScriptedModel([reply("film", f) for f, _ in cases])
    for f, sources in cases:
        r = self_query(m, kb, "films", FIELDS, k=10, mode="dense")
        assert r.filter == f and {h.source for h in r.hits} == sources


def test_prompt_lists_the_fields_and_the_schema_allows_only_them(kb):
    m = ScriptedModel([reply("", {})])
    query, filter = build_query(m, "anything about hotels", FIELDS)
    assert (query, filter) == ("anything about hotels", {})  # an empty query falls back to the question
    prompt = m.prompts[0]
    assert prompt.startswith(SELF_QUERY_TEMPLATE.split("\n")[0])
    assert '- genre (string, one of: "comedy", "drama", "horror"): the film\'s genre' in prompt
    assert "- year (integer): the year the film came out" in prompt and "Question: anything about hotels" in prompt
    schema = JSONSchema(filter_schema(FIELDS))
    assert schema.check('{"year": {"$gte": 2000}, "genre": {"$in": ["drama"]}}')
    for bad in ('{"lang": {"$eq": "en"}}', '{"genre": {"$eq": "western"}}', '{"year": {"$eq": "recent"}}',
                '{"year": 2000}', '{"year": {"$like": 2000}}',
                '{"genre": {"$gt": "comedy"}}', '{"kids": {"$lt": true}}', '{"year": {"$in": []}}', '{"year": {}}'):
        with pytest.raises(Invalid):
            schema.check(bad)


def test_an_out_of_schema_filter_is_sent_back_and_repaired(kb):
    m = ScriptedModel([reply("time travel", {"language": {"$eq": "en"}}),
                       reply("time travel", {"genre": {"$eq": "drama"}})])
    r = self_query(m, kb, "dramas about time travel", FIELDS, mode="dense")
    assert r.filter == {"genre": {"$eq": "drama"}} and [h.source for h in r.hits] == ["f:looper"]
    assert len(m.calls) == 2 and "'language' was unexpected" in m.prompts[1]


def test_a_filter_that_stays_out_of_schema_is_rejected_clearly(kb):
    m = ScriptedModel([reply("x", {"genre": {"$eq": "western"}})], repeat=True)
    with pytest.raises(StructuredOutputError, match="'western' is not one of") as e:
        self_query(m, kb, "westerns", FIELDS, max_retries=1)
    assert len(m.calls) == 2 and "western" in e.value.text


def test_check_filter_repairs_the_unambiguous_and_names_the_rest():
    assert check_filter({"year": {">=": "2015"}, "genre": ["Comedy"], "rating": 7, "kids": "true"}, FIELDS) == \
        {"year": {"$gte": 2015}, "genre": {"$in": ["comedy"]}, "rating": 7.0, "kids": True}
    assert check_filter(None, FIELDS) == {}
    for bad, message in [({"lang": "en"}, "unknown metadata field 'lang'; accepted: genre, year, rating, kids"),
                         ({"genre": "western"}, "not one of the allowed values"),
                         ({"year": "recent"}, "'recent' is not of type integer"),
                         ({"year": {"$like": 1}}, "operator '\\$like' is not one of"),
                         ({"kids": {"$gt": True}}, "operator '\\$gt' is not one of \\$eq, \\$ne"),
                         ({"year": {}}, "no condition"),
                         ("year > 2000", "must be an object")]:
        with pytest.raises(ConfigError, match=message):
            check_filter(bad, FIELDS)


def test_fields_are_checked_when_declared():
    with pytest.raises(ConfigError, match="type 'date'"):
        MetadataField("when", "date")
    with pytest.raises(ConfigError, match="field name 'bad key'"):
        MetadataField("bad key")
    with pytest.raises(ConfigError, match="repeat"):
        check_filter({}, [MetadataField("a"), {"name": "a"}])
    with pytest.raises(ConfigError, match="is not of type integer"):
        MetadataField("year", int, values=["x"])
    assert MetadataField("n", float, values=["1", 2]).values == [1.0, 2.0]


def test_the_query_and_filter_are_traced(kb):
    self_query(ScriptedModel([reply("time travel", {"year": {"$lt": 2000}})]), kb, "old time travel films", FIELDS)
    span = tracing.TraceStore().list(name_like="rag.self_query")[0]
    a = span["attributes"]
    assert a["llmkit.rag.query"] == "time travel" and json.loads(a["llmkit.rag.filter"]) == {"year": {"$lt": 2000}}
    assert a["llmkit.rag.fields"] == ["genre", "year", "rating", "kids"]
    call = tracing.TraceStore().list(name_like="chat scripted")[0]
    assert call["parent_id"] == span["span_id"]
