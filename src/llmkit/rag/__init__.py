"""Retrieval-augmented generation: loaders, splitters, embedders, knowledge bases (SQLite,
PostgreSQL + pgvector, Milvus), retrieval strategies, rerankers, answers with citations, memory,
routing and query construction (self-query, text-to-SQL).

    >>> from llmkit.rag import load_folder, make_splitter
    >>> docs = list(load_folder("docs/", glob="**/*.md"))
    >>> chunks = make_splitter("markdown", chunk_size=256).split_documents(docs)
    >>> kb = KnowledgeBase("notes"); kb.ingest("docs/"); kb.search("how to install", k=5, mode="hybrid")

Heavy libraries (sentence-transformers, torch, pypdf, python-docx) load only when used.
The RAG chunk type is ``llmkit.rag.splitters.Chunk`` (``llmkit.Chunk`` is a streamed model chunk).
"""
from .answer import (ANSWER_TEMPLATE, NOT_FOUND_TEXT, Answer, Citation, answer, mmr, mmr_hits,
                     reorder_lost_in_the_middle)
from .embedders import CachedEmbedder, Embedder, OpenAIEmbedder, embedded_minilm
from .kb import IngestReport, KnowledgeBase, fuse, rrf
from .memory import SUMMARY_TEMPLATE, BufferMemory, SummaryMemory, VectorMemory, WindowMemory
from .rerank import LISTWISE_TEMPLATE, POINTWISE_TEMPLATE, CrossEncoderReranker, LLMReranker
from .retrievers import (COMPRESS_TEMPLATE, HYDE_TEMPLATE, MULTI_QUERY_TEMPLATE, compress, compress_by_embedding,
                         expand_parents, expand_window, hyde, multi_query, parent_document, rag_fusion, rewrite)
from .router import ROUTER_TEMPLATE, Route, RoutedAnswer, Router
from .self_query import SELF_QUERY_TEMPLATE, MetadataField, SelfQuery, self_query
from .loaders import LOADERS, Document, iter_files, load, load_folder
from .splitters import (SPLITTERS, HTMLSplitter, MarkdownSplitter, ParentChildSplitter, RecursiveSplitter,
                        SemanticSplitter, SentenceSplitter, TokenSplitter, make_splitter)
from .stores import Hit, SQLiteStore, filter_sql, make_store

__all__ = ["Embedder", "CachedEmbedder", "OpenAIEmbedder", "embedded_minilm", "Document", "load", "load_folder", "iter_files", "LOADERS",
           "SPLITTERS", "make_splitter", "RecursiveSplitter", "TokenSplitter", "MarkdownSplitter", "HTMLSplitter",
           "SentenceSplitter", "SemanticSplitter", "ParentChildSplitter",
           "KnowledgeBase", "IngestReport", "Hit", "SQLiteStore", "fuse", "filter_sql",
           "answer", "Answer", "Citation", "ANSWER_TEMPLATE", "NOT_FOUND_TEXT", "reorder_lost_in_the_middle",
           "mmr", "mmr_hits", "rrf", "make_store",
           "multi_query", "rag_fusion", "hyde", "rewrite", "parent_document", "expand_parents", "expand_window",
           "compress", "compress_by_embedding", "MULTI_QUERY_TEMPLATE", "HYDE_TEMPLATE", "COMPRESS_TEMPLATE",
           "LLMReranker", "CrossEncoderReranker", "POINTWISE_TEMPLATE", "LISTWISE_TEMPLATE",
           "BufferMemory", "WindowMemory", "SummaryMemory", "VectorMemory", "SUMMARY_TEMPLATE",
           "Router", "Route", "RoutedAnswer", "ROUTER_TEMPLATE",
           "self_query", "MetadataField", "SelfQuery", "SELF_QUERY_TEMPLATE"]
