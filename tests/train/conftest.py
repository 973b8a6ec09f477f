"""Fixtures of the training tests: a tiny random llama saved as a transformers folder (with the real
SmolLM2 tokenizer and chat template), and a JSONL writer."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from llmkit.models.hf import embedded_dir

    return AutoTokenizer.from_pretrained(embedded_dir())


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer, 64-wide random LlamaForCausalLM folder (~6 M parameters, most in the embeddings)."""
    from tiny import tiny_llama

    path = tmp_path_factory.mktemp("tiny-llama")
    m = tiny_llama(tokenizer)
    m.model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def jsonl(tmp_path):
    """``jsonl(rows, name)`` writes rows (dicts, or raw strings for broken lines) and returns the path."""
    def write(rows, name: str = "data.jsonl") -> str:
        path = tmp_path / name
        path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
        return str(path)

    return write
