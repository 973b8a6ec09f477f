import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import loopback.py and helpers directly
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Rebuildable caches (the dequantized embedded model) live outside the per-test home.
os.environ.setdefault("LLMKIT_CACHE", str(Path.home() / ".cache" / "llmkit-test"))


@pytest.fixture(autouse=True)
def llmkit_home(tmp_path, monkeypatch):
    """Every test gets its own $LLMKIT_HOME, so traces and caches never leak between tests
    (the dequantized-model cache is shared through LLMKIT_CACHE so it is built once)."""
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "llmkit-home"))
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "LLMKIT_OTLP_ENDPOINT", "LLMKIT_TRACE"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path / "llmkit-home"


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2 on llama.cpp, loaded once for every test that needs it."""
    import llmkit as lk

    return lk.model()
