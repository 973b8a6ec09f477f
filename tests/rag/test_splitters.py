"""Splitters: sizes, overlaps, exact offsets, heading paths, sentences, semantic breaks, parent/child."""
import random
import re
from itertools import pairwise

import pytest

from llmkit import ConfigError
from llmkit.rag.splitters import (
    Chunk,
    HTMLSplitter,
    MarkdownSplitter,
    ParentChildSplitter,
    RecursiveSplitter,
    SemanticSplitter,
    SentenceSplitter,
    TokenSplitter,
    make_splitter,
    sentences,
)


def words(text: str) -> int:  # the cheap, exact length function for unit tests
    return len(text.split())


def sample_text(seed: int = 0, paragraphs: int = 25) -> str:
    rng = random.Random(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
             "supercalifragilisticexpialidocious"]

    def para():
        return ". ".join(" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 15)))
                         for _ in range(rng.randint(1, 5))) + "."
    return "\n\n".join("\n".join(para() for _ in range(rng.randint(1, 3))) for _ in range(paragraphs))


def assert_offsets(text, chunks):
    for c in chunks:
        assert text[c.metadata["start"]:c.metadata["end"]] == c.text


@pytest.mark.parametrize("size,overlap", [(12, 0), (30, 8), (64, 16)])
def test_recursive_sizes_overlap_offsets_and_reconstruction(size, overlap):
    text = sample_text()
    chunks = RecursiveSplitter(size, overlap, tokens=words).split(text, {"source": "s.txt"})
    assert len(chunks) > 3
    assert_offsets(text, chunks)
    assert all(words(c.text) <= size for c in chunks)
    assert [c.metadata["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert all(c.metadata["source"] == "s.txt" for c in chunks)
    shared = [a.metadata["end"] - b.metadata["start"] for a, b in pairwise(chunks)]
    assert all(a.metadata["end"] < b.metadata["end"] for a, b in pairwise(chunks))
    if overlap == 0:
        assert all(n <= 0 for n in shared)
    for (a, b), n in zip(pairwise(chunks), shared):
        if n > 0:  # the repeated text is no longer than chunk_overlap
            assert words(text[b.metadata["start"]:a.metadata["end"]]) <= overlap
    # the non-overlapping parts plus the whitespace between chunks give the text back: nothing lost
    parts, pos = [], 0
    for c in chunks:
        s, e = c.metadata["start"], c.metadata["end"]
        if s > pos:
            assert text[pos:s].strip() == ""
            parts.append(text[pos:s])
        parts.append(text[max(pos, s):e])
        pos = e
    assert text[pos:].strip() == ""
    assert "".join(parts) + text[pos:] == text

def test_recursive_overlap_carries_the_last_pieces():
    text = "\n".join(f"s{i} a b c" for i in range(12))  # 4-word lines
    chunks = RecursiveSplitter(12, 4, tokens=words).split(text)
    assert [c.text for c in chunks[:2]] == ["s0 a b c\ns1 a b c\ns2 a b c", "s2 a b c\ns3 a b c\ns4 a b c"]
    assert all(b.text.splitlines()[0] == a.text.splitlines()[-1] for a, b in pairwise(chunks))


def test_unbreakable_piece_is_the_only_oversized_chunk():
    text = "short words here. " + "x" * 50 + " more words"
    chunks = RecursiveSplitter(10, 0, separators=[". ", " "], tokens=len).split(text)
    assert_offsets(text, chunks)
    assert [c.text for c in chunks if len(c.text) > 10] == ["x" * 50]


def test_ids_are_stable_and_distinct():
    text = sample_text(1)
    a = RecursiveSplitter(20, 5, tokens=words).split(text, {"source": "a"})
    b = RecursiveSplitter(20, 5, tokens=words).split(text, {"source": "a"})
    c = RecursiveSplitter(20, 5, tokens=words).split(text, {"source": "b"})
    assert [x.id for x in a] == [x.id for x in b]
    assert len({x.id for x in a}) == len(a)
    assert {x.id for x in a}.isdisjoint(x.id for x in c)


@pytest.mark.parametrize("size,overlap", [(50, 10), (100, 0), (37, 5), (200, 40)])
def test_recursive_matches_langchain(size, overlap):
    lts = pytest.importorskip("langchain_text_splitters", reason="langchain-text-splitters not installed")
    seps = ["\n\n", "\n", ". ", " ", ""]
    text = sample_text(2)
    ref = lts.RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap, separators=seps,
                                             length_function=len).split_text(text)
    ours = RecursiveSplitter(size, overlap, separators=seps, tokens=len).split(text)
    assert [c.text for c in ours] == ref


MARKDOWN = """# Guide
Intro line.

## Install
Use pip.

### From source
Clone it, then:

```bash
# this is a shell comment, not a heading
make install
```

## Usage
Run it.
# Appendix
#### Deep
Skipped levels are fine.
"""


def test_markdown_heading_paths_and_code_fences():
    chunks = MarkdownSplitter(chunk_size=200, chunk_overlap=0, tokens=words).split(MARKDOWN, {"source": "g.md"})
    assert_offsets(MARKDOWN, chunks)
    paths = [c.metadata["heading_path"] for c in chunks]
    assert paths == [["Guide"], ["Guide", "Install"], ["Guide", "Install", "From source"],
                     ["Guide", "Usage"], ["Appendix", "Deep"]]
    fence = chunks[2].text
    assert "# this is a shell comment" in fence and fence.startswith("### From source")
    assert all(c.metadata["source"] == "g.md" for c in chunks)


def test_markdown_long_section_is_split_recursively():
    body = sample_text(3, paragraphs=6)
    text = f"# Top\n## Long\n{body}\n## Next\nTail."
    chunks = MarkdownSplitter(chunk_size=20, chunk_overlap=4, tokens=words).split(text)
    assert_offsets(text, chunks)
    long = [c for c in chunks if c.metadata["heading_path"] == ["Top", "Long"]]
    assert len(long) > 2 and all(words(c.text) <= 20 for c in chunks)
    assert chunks[-1].metadata["heading_path"] == ["Top", "Next"]


HTML = """<html><head><title>t</title><style>h1 {color: red}</style></head><body>
<h1>Guide</h1><p>Intro   text
spread over lines.</p>
<h2>Install</h2><p>Use pip.</p>
<h3>From <em>source</em></h3><p>Clone it.</p><pre>make   install</pre>
<h2>Usage</h2><ul><li>Run it.</li><li>Stop it.</li></ul>
<h1>Appendix</h1><div>Last words.</div>
</body></html>"""


def test_html_heading_paths_and_offsets_into_extracted_text():
    s = HTMLSplitter(chunk_size=100, chunk_overlap=0, tokens=words)
    chunks = s.split(HTML)
    assert_offsets(s.extract(HTML), chunks)
    assert [c.metadata["heading_path"] for c in chunks] == [
        ["Guide"], ["Guide", "Install"], ["Guide", "Install", "From source"], ["Guide", "Usage"], ["Appendix"]]
    assert "Intro text spread over lines." in chunks[0].text  # whitespace normalised
    assert "make   install" in chunks[2].text  # except inside <pre>
    assert "color" not in s.extract(HTML)


def test_sentence_segmentation_keeps_abbreviations_and_decimals():
    text = ("Dr. Smith measured pi as 3.14 in the lab. Some fruits, e.g. apples, are sweet! "
            "Was it J. Doe? Yes.\n\nA new paragraph")
    got = [text[a:b].strip() for a, b in sentences(text)]
    assert got == ["Dr. Smith measured pi as 3.14 in the lab.", "Some fruits, e.g. apples, are sweet!",
                   "Was it J. Doe?", "Yes.", "A new paragraph"]


def test_sentence_splitter_packs_whole_sentences_with_overlap():
    text = " ".join(f"Sentence number {i} has e.g. about 3.5 words." for i in range(30))
    chunks = SentenceSplitter(chunk_size=25, chunk_overlap=8, tokens=words).split(text)
    assert_offsets(text, chunks)
    assert all(words(c.text) <= 25 for c in chunks)
    assert all(c.text.startswith("Sentence") and c.text.endswith("words.") for c in chunks)
    for a, b in pairwise(chunks):  # 3 sentences of 8 words fit in 25; one fits in the overlap of 8
        assert len(sentences(a.text)) == 3 or b is chunks[-1]
        assert re.fullmatch(r"Sentence number \d+ has e.g. about 3.5 words.", text[b.metadata["start"]:a.metadata["end"]])


def test_sentence_splitter_breaks_an_overlong_sentence():
    text = "Short one. " + " ".join(["word"] * 40) + ". Another short one."
    chunks = SentenceSplitter(chunk_size=10, chunk_overlap=0, tokens=words).split(text)
    assert_offsets(text, chunks)
    assert all(words(c.text) <= 10 for c in chunks)


def test_parent_child_ids_link_up():
    text = sample_text(4)
    chunks = ParentChildSplitter(RecursiveSplitter(60, 0, tokens=words),
                                 RecursiveSplitter(15, 3, tokens=words)).split(text, {"source": "p"})
    assert_offsets(text, chunks)
    parents = {c.id: c for c in chunks if "parent_id" not in c.metadata}
    children = [c for c in chunks if "parent_id" in c.metadata]
    assert len(parents) > 1 and len(children) > len(parents)
    for c in children:
        p = parents[c.metadata["parent_id"]]
        assert p.metadata["start"] <= c.metadata["start"] < c.metadata["end"] <= p.metadata["end"]
        assert c.text in p.text and words(c.text) <= 15
    assert set(parents) == {c.metadata["parent_id"] for c in children}


def test_token_splitter_approximate_tokens():
    text = sample_text(5)
    chunks = TokenSplitter(chunk_size=20, chunk_overlap=5).split(text)
    assert_offsets(text, chunks)
    from llmkit.rag.splitters import approx_tokens
    assert all(approx_tokens(c.text) <= 20 for c in chunks)
    assert approx_tokens(text[chunks[0].metadata["start"]:chunks[1].metadata["start"]]) == 15  # step = size - overlap


def test_make_splitter_and_errors():
    s = make_splitter("sentence", chunk_size=50, chunk_overlap=5)
    assert isinstance(s, SentenceSplitter) and s.chunk_size == 50
    with pytest.raises(ConfigError, match="accepted: recursive, token, markdown, html, sentence, semantic"):
        make_splitter("fancy")
    with pytest.raises(ConfigError, match="chunk_szie.*accepted: chunk_size, chunk_overlap"):
        make_splitter("recursive", chunk_szie=10)
    with pytest.raises(ConfigError, match="chunk_overlap=50"):
        make_splitter("recursive", chunk_size=50, chunk_overlap=50)
    with pytest.raises(ConfigError, match="offsets"):
        TokenSplitter(tokens=len)


def test_split_documents_inherits_metadata():
    class Doc:
        def __init__(self, text, metadata):
            self.text, self.metadata = text, metadata

    docs = [Doc(sample_text(6, 4), {"source": "a"}), Doc(sample_text(7, 4), {"source": "b"})]
    chunks = RecursiveSplitter(20, 0, tokens=words).split_documents(docs)
    assert {c.metadata["source"] for c in chunks} == {"a", "b"}
    assert next(c.metadata["chunk_index"] for c in chunks if c.metadata["source"] == "b") == 0
    assert isinstance(chunks[0], Chunk)


@pytest.fixture(scope="module")
def embedder():
    from llmkit.rag import Embedder

    return Embedder()


@pytest.mark.integration
def test_token_splitter_with_minilm_tokenizer(embedder):
    text = sample_text(8) + " Tokenization splits unfamiliar words like antidisestablishmentarianism."
    chunks = TokenSplitter(chunk_size=64, chunk_overlap=8, tokens=embedder).split(text)
    assert len(chunks) > 3
    assert_offsets(text, chunks)
    assert all(embedder.count_tokens(c.text) <= 64 for c in chunks)
    assert max(embedder.count_tokens(c.text) for c in chunks) >= 60  # windows are filled, not tiny
    # the embedder's bound count_tokens resolves to the same (untruncated) tokenizer
    r = RecursiveSplitter(300, 0, tokens=embedder.count_tokens).split(sample_text(9, 60))
    assert any(embedder.count_tokens(c.text) == 256 for c in r)  # capped by the model, yet...
    assert all(len(embedder.model.tokenizer(c.text)["input_ids"]) <= 300 for c in r)


@pytest.mark.integration
def test_semantic_splitter_breaks_between_topics(embedder):
    cooking = ("Preheat the oven to 180 degrees before you start the dough. Whisk the eggs with sugar until "
               "pale and fluffy. Fold the flour gently into the batter with a spatula. Pour the batter into a "
               "buttered cake tin. Bake the cake for forty minutes until a skewer comes out clean.")
    astronomy = ("Jupiter is the largest planet in the solar system. Its Great Red Spot is a storm larger than "
                 "Earth. Galileo discovered four of its moons with an early telescope. Saturn's rings are made "
                 "of ice and rock orbiting the planet. Distant galaxies drift away as the universe expands.")
    text = cooking + " " + astronomy
    chunks = SemanticSplitter(embedder, breakpoint_percentile=95).split(text)
    assert_offsets(text, chunks)
    assert [c.text for c in chunks] == [cooking, astronomy]
