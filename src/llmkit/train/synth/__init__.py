"""Synthetic training data: Self-Instruct, Evol-Instruct, QA pairs grounded in documents, and the
filters that clean them (an LLM judge, near-duplicate removal), written as chat JSONL.

    >>> import llmkit as lk
    >>> from llmkit.train import synth
    >>> m = lk.model()
    >>> rows = synth.self_instruct(m, ["Write a haiku about rain.", "List three uses of vinegar."], n=50)
    >>> rows += synth.evol_instruct(m, ["Explain recursion."], rounds=2)
    >>> rows += synth.qa_from_documents(m, "handbook", n=30)          # a knowledge base by name
    >>> rows = synth.judge_filter(m, synth.dedup(rows, threshold=0.9), threshold=4)
    >>> synth.write_jsonl(rows, "train.jsonl")       # what `llmkit train sft` reads
    >>> rows.rejected                                  # why candidates were thrown away
    Counter({'similar': 7, 'unsupported': 3, ...})

A row is ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "meta": {...}}``;
``meta`` (method, source, model, judge score …) is ignored by the trainer. Every prompt is a
module-level Jinja2 template you can print and pass back changed: ``SELF_INSTRUCT_TEMPLATE``,
``RESPONSE_TEMPLATE``, ``EVOL_DEPTH_TEMPLATE`` with ``EVOL_METHODS``, ``EVOL_BREADTH_TEMPLATE``,
``EVOL_EQUAL_TEMPLATE``, ``QA_TEMPLATE``, ``QA_CONTEXT_TEMPLATE``; the judge's is
``llmkit.evals.judges.RUBRIC_TEMPLATE`` with ``JUDGE_RUBRIC``.

The files (module names differ from the functions they define, so importing a module never
replaces a function of the same name on this package):

    config.py     FilterConfig, SynthConfig, InstructConfig and one config per method (the CLI flags)
    io.py         Rows, chat_row, check_row, write_jsonl, read_jsonl, read_instructions
    text.py       words, STOP_WORDS, rouge_l, shingles, jaccard
    common.py     what the generators share: options over a config, per-call seeds, progress bar
    instruct.py   self_instruct (Wang et al., 2022), parse_instructions, instruction_problem
    evol.py       evol_instruct (Xu et al., 2023), clean_evolved, evolution_failure
    qa.py         qa_from_documents, document_chunks, qa_problem
    filter.py     judge_filter, dedup (MinHash LSH), minhash, filter_rows
"""
from __future__ import annotations

from .common import RESPONSE_TEMPLATE
from .config import EvolConfig, FilterConfig, QAConfig, SelfInstructConfig
from .evol import (
    EVOL_BREADTH_TEMPLATE,
    EVOL_DEPTH_TEMPLATE,
    EVOL_EQUAL_TEMPLATE,
    EVOL_METHODS,
    clean_evolved,
    evol_instruct,
    evolution_failure,
)
from .filter import JUDGE_RUBRIC, dedup, filter_rows, judge_filter, minhash
from .instruct import (
    SELF_INSTRUCT_TEMPLATE,
    instruction_problem,
    parse_instructions,
    self_instruct,
)
from .io import (
    ROLES,
    Rows,
    chat_row,
    check_row,
    read_instructions,
    read_jsonl,
    write_jsonl,
)
from .qa import (
    QA_CONTEXT_TEMPLATE,
    QA_TEMPLATE,
    SourceChunk,
    document_chunks,
    qa_from_documents,
    qa_problem,
)
from .text import STOP_WORDS, jaccard, rouge_l, shingles, words

__all__ = [
    # generators
    "self_instruct", "evol_instruct", "qa_from_documents",
    # filters
    "judge_filter", "dedup", "filter_rows", "minhash",
    # rows and files
    "Rows", "chat_row", "check_row", "write_jsonl", "read_jsonl", "read_instructions", "ROLES",
    # the pieces each method is made of
    "parse_instructions", "instruction_problem", "clean_evolved", "evolution_failure", "SourceChunk",
    "document_chunks", "qa_problem",
    # text measures
    "words", "STOP_WORDS", "rouge_l", "shingles", "jaccard",
    # prompts
    "SELF_INSTRUCT_TEMPLATE", "RESPONSE_TEMPLATE", "EVOL_DEPTH_TEMPLATE", "EVOL_METHODS", "EVOL_BREADTH_TEMPLATE",
    "EVOL_EQUAL_TEMPLATE", "QA_TEMPLATE", "QA_CONTEXT_TEMPLATE", "JUDGE_RUBRIC",
    # configs
    "FilterConfig", "SelfInstructConfig", "EvolConfig", "QAConfig",
]
