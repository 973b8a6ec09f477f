"""Retrieval-augmented generation: loaders, splitters, embedders, the SQLite knowledge base,
text-to-SQL (so far).

    >>> from llmkit.rag import load_folder, make_splitter
    >>> docs = list(load_folder("docs/", glob="**/*.md"))
    >>> chunks = make_splitter("markdown", chunk_size=256).split_documents(docs)
    >>> kb = KnowledgeBase("notes"); kb.ingest("docs/"); kb.search("how to install", k=5, mode="hybrid")

Heavy libraries (sentence-transformers, torch, pypdf, python-docx) load only when used.
The RAG chunk type is ``llmkit.rag.splitters.Chunk`` (``llmkit.Chunk`` is a streamed model chunk).
"""
from .answer import (ANSWER_TEMPLATE, NOT_FOUND_TEXT, Answer, Citation, answer, mmr, mmr_hits,
                     reorder_lost_in_the_middle)
from .embedders import Embedder, embedded_minilm
from .kb import IngestReport, KnowledgeBase, fuse
from .loaders import LOADERS, Document, iter_files, load, load_folder
from .splitters import (SPLITTERS, HTMLSplitter, MarkdownSplitter, ParentChildSplitter, RecursiveSplitter,
                        SemanticSplitter, SentenceSplitter, TokenSplitter, make_splitter)
from .stores import Hit, SQLiteStore, filter_sql

__all__ = ["Embedder", "embedded_minilm", "Document", "load", "load_folder", "iter_files", "LOADERS",
           "SPLITTERS", "make_splitter", "RecursiveSplitter", "TokenSplitter", "MarkdownSplitter", "HTMLSplitter",
           "SentenceSplitter", "SemanticSplitter", "ParentChildSplitter",
           "KnowledgeBase", "IngestReport", "Hit", "SQLiteStore", "fuse", "filter_sql",
           "answer", "Answer", "Citation", "ANSWER_TEMPLATE", "NOT_FOUND_TEXT", "reorder_lost_in_the_middle",
           "mmr", "mmr_hits"]
