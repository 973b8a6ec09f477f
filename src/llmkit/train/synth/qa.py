"""Question/answer pairs grounded in documents: chunks of a knowledge base, files or texts, a JSON
question and answer per call, kept only when the answer is supported by its chunk.

Example:
    >>> import llmkit as lk
    >>> from llmkit.train.synth import qa_from_documents
    >>> rows = qa_from_documents(lk.model(), "handbook", n=30)          # a knowledge base by name
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError, StructuredOutputError
from ...prompts.templates import render
from .common import _Calls, _model_name, _options, _progress
from .config import QAConfig
from .io import Rows, chat_row
from .text import _content, words

QA_TEMPLATE = """\
Write one question that the text below answers, and its answer in a few words taken from the text.
{% if asked %}

Ask something other than:
{% for q in asked %}
- {{ q }}
{% endfor %}
{% endif %}

Example text: The Nile is the longest river in Africa. It flows north for about 6,650 km into the Mediterranean Sea.
Example question: Into which sea does the Nile flow?
Example answer: the Mediterranean Sea

Text: {{ chunk }}"""

#: The row's user turn with ``with_context=True`` (reading comprehension, as a RAG model sees it).
QA_CONTEXT_TEMPLATE = """\
Answer the question from the text.

Text: {{ chunk }}

Question: {{ question }}"""


@dataclass
class SourceChunk:
    """A passage QA pairs are written from: its ``text``, the ``source`` document, and the chunk ``id``."""

    text: str
    source: str
    id: str


def _split(docs: list[Any]) -> list[SourceChunk]:
    from ...rag.splitters import RecursiveSplitter

    splitter = RecursiveSplitter(chunk_size=256, chunk_overlap=32)  # the knowledge base's default sizes
    return [SourceChunk(c.text, str(c.metadata.get("source", "")), c.id) for c in splitter.split_documents(docs)]


def document_chunks(source: Any) -> list[SourceChunk]:
    """The chunks of a knowledge base (object, name or ``.db`` path), of files (a file or folder),
    or of a list of texts (split like a knowledge base does, 256 tokens)."""
    from ...rag.loaders import Document

    if hasattr(source, "store") and hasattr(source.store, "chunks"):
        return [SourceChunk(h.text, h.source, h.chunk_id) for h in source.store.chunks()]
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.exists() and path.suffix != ".db":
            from ...rag.loaders import load_folder

            return _split(list(load_folder(path)))
        from ...rag.kb import KnowledgeBase, kb_path

        try:
            db = kb_path(source)
        except ConfigError:  # neither a name nor a .db path: the message below says what would do
            db = path
        if not db.is_file():
            raise ConfigError(f"no knowledge base, file or folder {str(source)!r} (looked for {db}); give a "
                              f"knowledge base name or .db path, a file or folder, or a list of texts")
        with KnowledgeBase(db) as kb:
            return [SourceChunk(h.text, h.source, h.chunk_id) for h in kb.store.chunks()]
    source = list(source)
    if source and all(isinstance(c, SourceChunk) for c in source):  # already chunks (the CLI reads them first)
        return source
    docs = []
    for i, item in enumerate(source):
        if isinstance(item, str):
            docs.append(Document(item, {"source": f"text:{i}"}))
        elif hasattr(item, "text"):  # a Document, a Hit, a splitter Chunk
            meta = getattr(item, "metadata", {}) or {}
            docs.append(Document(item.text, {"source": getattr(item, "source", None) or meta.get("source", f"text:{i}")}))
        else:
            raise ConfigError(f"source item {i} is a {type(item).__name__}; give texts, documents or hits")
    return _split(docs)


def qa_problem(question: str, answer: str, chunk: str, config: QAConfig | None = None) -> str | None:
    """Why a question/answer pair is not grounded in ``chunk``, or None: ``off_topic`` (the question
    shares no content word with the chunk), ``copies_text`` (it copies ``max_copied_words`` words in a
    row), ``empty_answer`` (no content word), ``unsupported`` (under ``min_support`` of the answer's
    content words are in the chunk), ``answer_in_question`` (the answer adds no word to the question),
    ``answer_cut`` (as long as ``max_answer_chars``: the length limit, not the model, ended it)."""
    cfg = config or QAConfig()
    text, q = words(chunk), words(question)
    vocab = set(text)
    if not set(_content(q)) & vocab:
        return "off_topic"
    k = cfg.max_copied_words
    runs = {tuple(text[i:i + k]) for i in range(len(text) - k + 1)}
    if any(tuple(q[i:i + k]) in runs for i in range(len(q) - k + 1)):
        return "copies_text"
    a = _content(words(answer))
    if not a:
        return "empty_answer"
    if sum(w in vocab for w in a) / len(a) < cfg.min_support:
        return "unsupported"
    if set(a) <= set(q):
        return "answer_in_question"
    if len(answer) >= cfg.max_answer_chars:
        return "answer_cut"
    return None


def qa_from_documents(model: Any, source: Any, n: int | None = None, *, config: QAConfig | None = None,
                      template: str = QA_TEMPLATE, context_template: str = QA_CONTEXT_TEMPLATE,
                      progress: bool | None = None, **options: Any) -> Rows:
    """Question/answer pairs grounded in chunks of documents: the model reads a chunk and answers
    JSON ``{"question", "answer"}`` (``Model.json``: enforced token by token on local models), and a
    pair is kept only when :func:`qa_problem` finds it grounded. Chunks are visited in a shuffled
    round robin, and each prompt lists the questions already asked of its chunk.

    Args:
        model: the llmkit model that writes the pairs.
        source: a ``KnowledgeBase``, a knowledge base name or ``.db`` path, a file or folder, or a list of texts.
        n: pairs to make (``config.n`` otherwise).
        template: the prompt (``chunk``, ``asked``); ``context_template``: the user turn with ``with_context``.
        **options: override fields of :class:`QAConfig`.

    Returns:
        :class:`Rows` with ``meta`` ``source`` (the document), ``chunk_id`` and ``support``.

    Example:
        >>> rows = qa_from_documents(lk.model(), "handbook", n=20, with_context=True)
    """
    cfg = _options(QAConfig, config, {"n": n}, options)
    chunks = [c for c in document_chunks(source) if len(words(c.text)) >= cfg.min_chunk_words]
    if not chunks:
        raise ConfigError(f"no chunk of at least min_chunk_words={cfg.min_chunk_words} words in the source")
    question: dict[str, Any] = {"type": "string", "minLength": 5, "maxLength": cfg.max_question_chars}
    if cfg.question_pattern:
        question["pattern"] = cfg.question_pattern
    schema = {"type": "object", "required": ["question", "answer"], "additionalProperties": False, "properties": {
        "question": question, "answer": {"type": "string", "minLength": 1, "maxLength": cfg.max_answer_chars}}}
    budget = cfg.max_question_chars + cfg.max_answer_chars + 32  # a token per character at worst: never cut short
    asked: dict[str, list[str]] = {}
    seen: set[tuple[str, ...]] = set()
    rng, calls, out, idle, order = random.Random(cfg.seed), _Calls(model, cfg.seed), Rows(), 0, []
    with _progress(cfg.n, "qa", progress) as advance:
        while len(out) < cfg.n and idle < cfg.patience:
            if not order:
                order = list(range(len(chunks)))
                rng.shuffle(order)
            c = chunks[order.pop()]
            prompt = render(template, chunk=c.text, asked=asked.get(c.id, []))
            try:  # the schema is enforced locally; instructions would only show a small model JSON to copy
                pair = model.json(prompt, schema=schema, instructions=False, **calls(cfg.temperature, budget))
            except StructuredOutputError:  # a remote model that never produced valid JSON
                out.rejected["invalid_json"] += 1
                idle += 1
                continue
            q, a = " ".join(pair["question"].split()), pair["answer"].strip()
            why = qa_problem(q, a, c.text, cfg) or ("duplicate" if tuple(words(q)) in seen else None)
            if why:
                out.rejected[why] += 1
                idle += 1
                continue
            seen.add(tuple(words(q)))
            asked.setdefault(c.id, []).append(q)
            support = sum(w in set(words(c.text)) for w in _content(words(a))) / len(_content(words(a)))
            user = render(context_template, chunk=c.text, question=q) if cfg.with_context else q
            out.append(chat_row(user, a, method="qa_from_documents", source=c.source, chunk_id=c.id,
                                support=round(support, 3), model=_model_name(model)))
            idle = 0
            advance(1)
    return out
