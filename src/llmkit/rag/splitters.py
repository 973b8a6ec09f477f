"""Text splitters: documents -> chunks with exact character offsets.

Sizes and overlaps are counted by a *length function* ``str -> int`` (the ``tokens`` option):

- ``tokens=Embedder()`` (or ``Embedder().count_tokens``): the embedder's own tokenizer -- the
  choice for real use, since a chunk then fits the model that will embed it. Counted without the
  256-token truncation that ``count_tokens`` applies, special tokens ([CLS]/[SEP]) included.
- ``tokens=None`` (default): a cheap approximation, one token per punctuation mark and per 8
  characters of a word; needs no model, so nothing heavy loads at import or split time.
- any callable ``str -> int`` (``len`` gives character sizes).

Every chunk's ``metadata["start"]:metadata["end"]`` slices the source text back to ``chunk.text``,
except :class:`HTMLSplitter`, whose offsets index the whitespace-normalised text that
:meth:`HTMLSplitter.extract` returns (markup has no single plain-text form).

Example:
    >>> from llmkit.rag.splitters import make_splitter
    >>> splitter = make_splitter("markdown", chunk_size=128, chunk_overlap=16)
    >>> chunks = splitter.split(open("README.md").read(), {"source": "README.md"})
    >>> chunks[0].metadata["heading_path"], chunks[0].metadata["start"]
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ..core.errors import ConfigError

Length = Callable[[str], int]


@dataclass
class Chunk:
    """A piece of a document: ``text``, its ``metadata`` (the document's, plus ``chunk_index``,
    ``start``/``end``, and where they apply ``heading_path`` and ``parent_id``) and a stable ``id``."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self):
        if not self.id:  # same source, place and text -> same id, run after run
            m = self.metadata
            key = f"{m.get('source', '')}\x00{m.get('start')}\x00{m.get('end')}\x00{self.text}"
            self.id = hashlib.sha256(key.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- length functions

_APPROX = re.compile(r"\w{1,8}|[^\w\s]")  # a word piece per 8 word characters, one per symbol


def approx_tokens(text: str) -> int:
    """A model-free token estimate: one per punctuation mark and per 8 characters of a word."""
    return sum(1 for _ in _APPROX.finditer(text))


def _hf_tokenizer(tokens: Any):
    """The Hugging Face tokenizer behind an Embedder (or its bound ``count_tokens``), else None."""
    owner = getattr(tokens, "__self__", tokens)
    return getattr(getattr(owner, "model", None), "tokenizer", None)


def length_function(tokens: Any = None) -> Length:
    """Resolve the ``tokens`` option to a ``str -> int`` function (see the module docstring)."""
    if tokens is None:
        return approx_tokens
    tok = _hf_tokenizer(tokens)
    if tok is not None:
        # count_tokens caps at the model's 256 tokens, which would make every long text "fit"
        return lambda text: len(tok(text, add_special_tokens=True, verbose=False)["input_ids"])
    if callable(tokens):
        return tokens
    raise ConfigError(f"tokens={tokens!r} is not accepted: pass None, an Embedder, or a callable str -> int")


# ---------------------------------------------------------------- shared machinery

Span = tuple[int, int]


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _merge(text: str, pieces: list[Span], size: int, overlap: int, length: Length) -> list[Span]:
    """LangChain's ``_merge_splits`` on contiguous spans: pack pieces up to ``size``, then start the
    next chunk with the trailing pieces that fit in ``overlap``. Lengths add up piece by piece;
    ``length("")`` (the special tokens every text pays once) is charged once per chunk."""
    fixed = length("")
    lens = [length(text[a:b]) - fixed for a, b in pieces]
    out: list[Span] = []
    cur: list[int] = []  # indices into pieces
    total = fixed
    for i, n in enumerate(lens):
        if total + n > size and cur:
            if (s := _strip(text, pieces[cur[0]][0], pieces[cur[-1]][1])) is not None:
                out.append(s)
            while cur and (total - fixed > overlap or total + n > size):
                total -= lens[cur.pop(0)]
        cur.append(i)
        total += n
    if cur and (s := _strip(text, pieces[cur[0]][0], pieces[cur[-1]][1])) is not None:
        out.append(s)
    return out


def _split_keep(text: str, start: int, end: int, sep: str) -> list[Span]:
    """Split ``text[start:end]`` on ``sep``, each separator kept at the start of the next piece."""
    if sep == "":
        return [(i, i + 1) for i in range(start, end)]
    cuts = [m.start() for m in re.finditer(re.escape(sep), text[start:end]) if m.start() > 0]
    bounds = [start] + [start + c for c in cuts] + [end]
    return [(a, b) for a, b in pairwise(bounds) if b > a]


def _check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size <= 0:
        raise ConfigError(f"chunk_size={chunk_size} must be positive")
    if not 0 <= chunk_overlap < chunk_size:
        raise ConfigError(f"chunk_overlap={chunk_overlap} must be >= 0 and smaller than chunk_size={chunk_size}")


def _chunks(text: str, spans: list[Span], metadata: dict | None, base: int = 0, **extra) -> list[Chunk]:
    meta = dict(metadata or {})
    return [Chunk(text[a:b], {**meta, **extra, "chunk_index": i, "start": base + a, "end": base + b})
            for i, (a, b) in enumerate(spans)]


class _Splitter:
    """What every splitter shares: ``split_documents`` over anything with ``.text`` and ``.metadata``."""

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        raise NotImplementedError

    def split_documents(self, docs) -> list[Chunk]:
        """Split each document; chunks inherit its metadata (``chunk_index`` counts per document)."""
        return [c for d in docs for c in self.split(d.text, d.metadata)]

    @property
    def length(self) -> Length:
        return length_function(getattr(self, "tokens", None))


# ---------------------------------------------------------------- recursive

@dataclass
class RecursiveSplitter(_Splitter):
    """LangChain's recursive character algorithm: split on the first separator found in the text,
    merge the pieces up to ``chunk_size``, recurse into pieces still too long with the next
    separator. Separators stay attached to the start of the following piece; chunks are stripped.

    Example:
        >>> RecursiveSplitter(chunk_size=64, chunk_overlap=8).split(text, {"source": "a.txt"})
    """

    chunk_size: int = 256  # in the length function's units (tokens by default)
    chunk_overlap: int = 32  # at most this much of a chunk's end is repeated at the next one's start
    separators: list[str] = field(default_factory=lambda: ["\n\n", "\n", ". ", " ", ""])  # coarse to fine
    tokens: Any = None  # None (approximate), an Embedder, or a callable str -> int

    def __post_init__(self):
        _check_sizes(self.chunk_size, self.chunk_overlap)

    def spans(self, text: str, start: int = 0, end: int | None = None) -> list[Span]:
        """The chunks of ``text[start:end]`` as (start, end) offsets into ``text``."""
        return self._spans(text, start, len(text) if end is None else end, list(self.separators), self.length)

    def _spans(self, text: str, start: int, end: int, separators: list[str], length: Length) -> list[Span]:
        sep, rest = separators[-1] if separators else "", []
        for i, s in enumerate(separators):
            if s == "" or s in text[start:end]:
                sep, rest = s, separators[i + 1:]
                break
        out: list[Span] = []
        good: list[Span] = []
        for a, b in _split_keep(text, start, end, sep):
            if length(text[a:b]) < self.chunk_size:
                good.append((a, b))
                continue
            if good:
                out += _merge(text, good, self.chunk_size, self.chunk_overlap, length)
                good = []
            if rest:
                out += self._spans(text, a, b, rest, length)
            elif (s := _strip(text, a, b)) is not None:
                out.append(s)  # an unbreakable piece longer than chunk_size
        if good:
            out += _merge(text, good, self.chunk_size, self.chunk_overlap, length)
        return out

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        return _chunks(text, self.spans(text), metadata)


# ---------------------------------------------------------------- token

@dataclass
class TokenSplitter(_Splitter):
    """Fixed windows of ``chunk_size`` tokens, ``chunk_overlap`` shared between neighbours, cut on
    the tokenizer's own tokens and mapped back to exact character offsets (HF fast tokenizers give
    ``return_offsets_mapping``; the approximate tokenizer uses its regex matches).

    Example:
        >>> TokenSplitter(chunk_size=128, chunk_overlap=16, tokens=Embedder()).split(text)
    """

    chunk_size: int = 256  # tokens per chunk, special tokens included
    chunk_overlap: int = 32  # tokens shared by neighbouring chunks
    tokens: Any = None  # None (approximate) or an Embedder; a plain callable has no offsets

    def __post_init__(self):
        _check_sizes(self.chunk_size, self.chunk_overlap)
        if self.tokens is not None and _hf_tokenizer(self.tokens) is None:
            raise ConfigError("TokenSplitter needs token offsets: pass tokens=None (approximate) or an Embedder")

    def _offsets(self, text: str) -> list[Span]:
        tok = _hf_tokenizer(self.tokens)
        if tok is None:
            return [m.span() for m in _APPROX.finditer(text)]
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(a, b) for a, b in enc["offset_mapping"] if b > a]

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        length, offs = self.length, self._offsets(text)
        room = self.chunk_size - length("")  # special tokens the model adds to every chunk
        if room <= self.chunk_overlap:
            raise ConfigError(f"chunk_size={self.chunk_size} leaves no room after {length('')} special tokens "
                              f"and chunk_overlap={self.chunk_overlap}")
        spans: list[Span] = []
        i = 0
        while i < len(offs):
            j = min(i + room, len(offs))
            # a cut inside a word can re-tokenize into more pieces: shrink until the text fits
            while j > i + 1 and length(text[offs[i][0]:offs[j - 1][1]]) > self.chunk_size:
                j -= 1
            spans.append((offs[i][0], offs[j - 1][1]))
            if j == len(offs):
                break
            i = max(j - self.chunk_overlap, i + 1)
        return _chunks(text, spans, metadata)


# ---------------------------------------------------------------- markdown / HTML

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")


def _sectioned(text: str, sections: list[tuple[int, int, list[str]]], inner: RecursiveSplitter,
               metadata: dict | None) -> list[Chunk]:
    """Recursively split each (start, end, heading_path) section; keep its path in the metadata."""
    out: list[Chunk] = []
    for start, end, path in sections:
        for a, b in inner.spans(text, start, end):
            out.append(Chunk(text[a:b], {**(metadata or {}), "heading_path": list(path), "start": a, "end": b}))
    for i, c in enumerate(out):
        c.metadata["chunk_index"] = i
    return out


@dataclass
class MarkdownSplitter(_Splitter):
    """Sections at ATX headings (``#`` to ``######``; lines inside ``` or ~~~ fences are never
    headings), each chunk's ``heading_path`` the headings above it (e.g. ``["Install", "From
    source"]``), long sections split further by :class:`RecursiveSplitter`. A chunk keeps its
    section's heading line in its text; sections that are only a heading make no chunk.

    Example:
        >>> MarkdownSplitter(chunk_size=128).split(readme)[0].metadata["heading_path"]
    """

    chunk_size: int = 256  # in the length function's units
    chunk_overlap: int = 32  # within a section; chunks never span two sections
    tokens: Any = None  # None (approximate), an Embedder, or a callable str -> int

    def __post_init__(self):
        _check_sizes(self.chunk_size, self.chunk_overlap)

    def sections(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, heading_path) for each section of ``text``."""
        out, path, start, pos, fence = [], [], 0, 0, None
        for line in text.splitlines(keepends=True):
            if m := _FENCE.match(line):
                marker = m.group(1)
                if fence is None:
                    fence = marker
                elif marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip().strip(marker[0]):
                    fence = None
            elif fence is None and (m := _HEADING.match(line.rstrip("\r\n"))):
                out.append((start, pos, list(path)))
                level = len(m.group(1))
                path = path[:level - 1] + [""] * (level - 1 - len(path)) + [(m.group(2) or "").strip()]
                start = pos
            pos += len(line)
        out.append((start, pos, list(path)))
        return [(a, b, [h for h in p if h]) for a, b, p in out if self._has_body(text[a:b])]

    @staticmethod
    def _has_body(section: str) -> bool:
        lines = section.splitlines()
        if lines and _HEADING.match(lines[0]):
            lines = lines[1:]
        return any(line.strip() for line in lines)

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        inner = RecursiveSplitter(self.chunk_size, self.chunk_overlap, tokens=self.tokens)
        return _sectioned(text, self.sections(text), inner, metadata)


_BLOCKS = {"p", "div", "li", "ul", "ol", "br", "tr", "table", "pre", "blockquote", "section", "article",
           "header", "footer", "nav", "aside", "main", "dd", "dt", "figure", "figcaption", "hr", "form"}
_HIDDEN = {"script", "style", "head", "template", "noscript"}


@dataclass
class HTMLSplitter(_Splitter):
    """Sections at ``<h1>``..``<h6>`` (parsed with BeautifulSoup), same ``heading_path`` and
    recursive splitting as :class:`MarkdownSplitter`. Text is whitespace-normalised (runs of spaces
    collapse, blocks become paragraphs, ``<pre>`` is kept as is), so offsets index
    ``HTMLSplitter.extract(html)``, not the markup.

    Example:
        >>> s = HTMLSplitter(chunk_size=128)
        >>> c = s.split(html)[0]; s.extract(html)[c.metadata["start"]:c.metadata["end"]] == c.text
        True
    """

    chunk_size: int = 256  # in the length function's units
    chunk_overlap: int = 32  # within a section; chunks never span two sections
    tokens: Any = None  # None (approximate), an Embedder, or a callable str -> int

    def __post_init__(self):
        _check_sizes(self.chunk_size, self.chunk_overlap)

    def _parse(self, html: str) -> tuple[str, list[tuple[int, int, list[str]]]]:
        from bs4 import BeautifulSoup, Comment, NavigableString, Tag

        soup = BeautifulSoup(html, "html.parser")
        parts: list[tuple[list[str], str]] = [([], "")]  # (heading_path, text) per section
        path: list[str] = []

        def add(s: str) -> None:
            parts[-1] = (parts[-1][0], parts[-1][1] + s)

        def walk(node) -> None:
            nonlocal path
            for child in node.children:
                if isinstance(child, Comment):
                    continue
                if isinstance(child, NavigableString):
                    pre = child.find_parent("pre") is not None
                    add(str(child) if pre else re.sub(r"\s+", " ", str(child)))
                elif isinstance(child, Tag) and child.name not in _HIDDEN:
                    if re.fullmatch(r"h[1-6]", child.name):
                        level, title = int(child.name[1]), child.get_text(" ", strip=True)
                        path = path[:level - 1] + [""] * (level - 1 - len(path)) + [title]
                        parts.append(([h for h in path if h], title + "\n\n"))
                    elif child.name in _BLOCKS:
                        add("\n\n")
                        walk(child)
                        add("\n\n")
                    else:
                        walk(child)

        walk(soup)
        text, sections = "", []
        for hpath, body in parts:
            body = re.sub(r" *\n\s*\n\s*", "\n\n", body).strip(" \n")
            body = re.sub(r"[ \t]+\n", "\n", body)
            if not body or (hpath and body == hpath[-1]):
                continue
            if text:
                text += "\n\n"
            sections.append((len(text), len(text) + len(body), hpath))
            text += body
        return text, sections

    def extract(self, html: str) -> str:
        """The normalised plain text that chunk offsets index into."""
        return self._parse(html)[0]

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        plain, sections = self._parse(text)
        inner = RecursiveSplitter(self.chunk_size, self.chunk_overlap, tokens=self.tokens)
        return _sectioned(plain, sections, inner, metadata)


# ---------------------------------------------------------------- sentences

ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "cf", "al", "approx", "dr", "mr", "mrs", "ms", "prof", "sr", "jr",
                 "st", "mt", "inc", "ltd", "co", "corp", "no", "fig", "eq", "vol", "p", "pp", "ca", "u.s", "u.k",
                 "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(\s+)|\n\s*\n\s*")  # end punctuation + whitespace, or a blank line


def sentences(text: str, abbreviations: set[str] = ABBREVIATIONS) -> list[Span]:
    """Sentence spans that tile ``text`` (each keeps its trailing whitespace).

    A period ends a sentence only before whitespace (so "3.14" holds), not after a known
    abbreviation ("e.g.", "Dr.") or a single initial ("J."), and not before a lowercase letter.
    """
    cuts = []
    for m in _END.finditer(text):
        punct = m.group(0)[0] in ".!?…"
        if punct and text[m.end():m.end() + 1].islower():
            continue  # "etc. and so on": a lowercase start is no new sentence
        if punct and m.group(0).rstrip().rstrip("\"'”’)]").endswith(".") and "?" not in m.group(0):
            word = re.search(r"[\w.]*$", text[:m.start()]).group(0).lower()
            if word in abbreviations or (len(word) == 1 and word.isalpha()):
                continue  # "Dr. Smith", "J. Smith"
        cuts.append(m.end())
    bounds = [0] + [c for c in cuts if 0 < c < len(text)] + [len(text)]
    return [(a, b) for a, b in pairwise(bounds) if b > a]


@dataclass
class SentenceSplitter(_Splitter):
    """Whole sentences packed up to ``chunk_size``; the next chunk starts with the last sentences
    that fit in ``chunk_overlap``. A sentence longer than ``chunk_size`` is split on words.

    Example:
        >>> SentenceSplitter(chunk_size=64, chunk_overlap=16).split(text)
    """

    chunk_size: int = 256  # in the length function's units
    chunk_overlap: int = 32  # whole sentences, at most this long, repeated at the next chunk's start
    tokens: Any = None  # None (approximate), an Embedder, or a callable str -> int

    def __post_init__(self):
        _check_sizes(self.chunk_size, self.chunk_overlap)

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        length, pieces = self.length, []
        for a, b in sentences(text):
            if length(text[a:b]) > self.chunk_size:
                for w in _split_keep(text, a, b, " "):  # merged below, word by word
                    pieces += _split_keep(text, *w, "") if length(text[w[0]:w[1]]) > self.chunk_size else [w]
            else:
                pieces.append((a, b))
        return _chunks(text, _merge(text, pieces, self.chunk_size, self.chunk_overlap, length), metadata)


# ---------------------------------------------------------------- semantic

def percentile(values: list[float], q: float) -> float:
    """``numpy.percentile(values, q)`` with linear interpolation, without numpy."""
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class SemanticSplitter(_Splitter):
    """Semantic chunking after Greg Kamradt: embed sentences, take the cosine distance across each
    gap between neighbouring sentences, and break at every gap whose distance exceeds the
    ``breakpoint_percentile`` of all distances. Chunks are runs of whole sentences with no size
    limit (run another splitter over them for one).

    The buffer differs from Kamradt's notebook on purpose: there each sentence is embedded with
    its neighbours on both sides, so windows across a topic change mix both topics and the
    largest distance can land a sentence or two off the change. Here each gap compares the
    ``buffer_size`` sentences before it with the ``buffer_size`` after it (``buffer_size=1`` is
    plain sentence-to-sentence), which keeps the smoothing and puts the break on the gap.

    Example:
        >>> SemanticSplitter(Embedder(), breakpoint_percentile=90).split(text)
    """

    embedder: Any = None  # anything with .embed(list[str]); None = the embedded MiniLM, made on first use
    breakpoint_percentile: float = 95  # higher -> fewer, larger chunks
    buffer_size: int = 2  # sentences embedded together on each side of a gap, to smooth the signal

    def __post_init__(self):
        if not 0 <= self.breakpoint_percentile <= 100:
            raise ConfigError(f"breakpoint_percentile={self.breakpoint_percentile} must be within 0..100")
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size={self.buffer_size} must be at least 1")

    def distances(self, text: str) -> tuple[list[Span], list[float]]:
        """The sentence spans and, for each gap between neighbours, the cosine distance between the
        windows of sentences before and after it."""
        spans = [s for s in sentences(text) if _strip(text, *s)]
        n, k = len(spans), self.buffer_size
        if n < 2:
            return spans, []
        if self.embedder is None:
            from .embedders import Embedder

            self.embedder = Embedder()
        left = [text[spans[max(0, i - k + 1)][0]:spans[i][1]] for i in range(n - 1)]
        right = [text[spans[i + 1][0]:spans[min(n - 1, i + k)][1]] for i in range(n - 1)]
        unique = list(dict.fromkeys(left + right))  # neighbouring windows repeat; embed each once
        vec = dict(zip(unique, self.embedder.embed(unique)))
        dist = []
        for a, b in zip(left, right):
            u, v = vec[a], vec[b]
            norm = math.sqrt(sum(x * x for x in u) * sum(y * y for y in v)) or 1.0
            dist.append(1.0 - sum(x * y for x, y in zip(u, v)) / norm)
        return spans, dist

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        spans, dist = self.distances(text)
        if not spans:
            return []
        cut = percentile(dist, self.breakpoint_percentile) if dist else 0.0
        groups, first = [], 0
        for i, d in enumerate(dist):
            if d > cut:
                groups.append((spans[first][0], spans[i][1]))
                first = i + 1
        groups.append((spans[first][0], spans[-1][1]))
        return _chunks(text, [s for g in groups if (s := _strip(text, *g))], metadata)


# ---------------------------------------------------------------- parent / child

@dataclass
class ParentChildSplitter(_Splitter):
    """Large parent chunks for the LLM to read, small children inside them for retrieval. Returns the
    parents first, then the children; each child's ``parent_id`` is its parent's ``id`` and its
    offsets index the original text.

    Example:
        >>> chunks = ParentChildSplitter(RecursiveSplitter(1024, 0), RecursiveSplitter(128, 16)).split(text)
        >>> parents = {c.id: c for c in chunks if "parent_id" not in c.metadata}
    """

    parent: Any = field(default_factory=lambda: RecursiveSplitter(1024, 0))  # any splitter
    child: Any = field(default_factory=lambda: RecursiveSplitter(256, 32))  # splits each parent's text

    def split(self, text: str, metadata: dict | None = None) -> list[Chunk]:
        parents = self.parent.split(text, metadata)
        children: list[Chunk] = []
        for p in parents:
            base = p.metadata["start"]
            for c in self.child.split(p.text, p.metadata):
                a, b = base + c.metadata["start"], base + c.metadata["end"]
                meta = {**c.metadata, "start": a, "end": b, "parent_id": p.id, "chunk_index": len(children)}
                children.append(Chunk(c.text, meta))
        return parents + children


# ---------------------------------------------------------------- choosing

SPLITTERS = {
    "recursive": RecursiveSplitter,
    "token": TokenSplitter,
    "markdown": MarkdownSplitter,
    "html": HTMLSplitter,
    "sentence": SentenceSplitter,
    "semantic": SemanticSplitter,
}


def make_splitter(name: str, **options) -> _Splitter:
    """A splitter by name with its options, e.g. ``make_splitter("sentence", chunk_size=128)``.

    Raises:
        ConfigError: an unknown name or option, naming the accepted ones.
    """
    if name not in SPLITTERS:
        raise ConfigError(f"unknown splitter {name!r}; accepted: {', '.join(SPLITTERS)}")
    cls = SPLITTERS[name]
    accepted = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for the {name!r} splitter; accepted: {', '.join(accepted)}")
    return cls(**options)
