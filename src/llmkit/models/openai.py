"""Any OpenAI-compatible Chat Completions endpoint: OpenAI itself and the hosts in PRESETS.

(The backend class is being written; PRESETS is the contract the registry reads.)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    base_url: str                      # ends in /v1 (or the host's equivalent)
    key_env: tuple[str, ...] = ()      # environment variables holding the key, first wins
    key_required: bool = True          # local servers need none
    base_url_env: str | None = None    # environment variable that overrides base_url


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", ("OPENAI_API_KEY",), base_url_env="OPENAI_BASE_URL"),
    "openrouter": Preset("https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",)),
    "together": Preset("https://api.together.xyz/v1", ("TOGETHER_API_KEY",)),
    "hf-router": Preset("https://router.huggingface.co/v1", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")),
    "groq": Preset("https://api.groq.com/openai/v1", ("GROQ_API_KEY",)),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", ("FIREWORKS_API_KEY",)),
    "deepseek": Preset("https://api.deepseek.com/v1", ("DEEPSEEK_API_KEY",)),
    "mistral": Preset("https://api.mistral.ai/v1", ("MISTRAL_API_KEY",)),
    "ollama": Preset("http://127.0.0.1:11434/v1", ("OLLAMA_API_KEY",), key_required=False, base_url_env="OLLAMA_BASE_URL"),
    "lmstudio": Preset("http://127.0.0.1:1234/v1", ("LMSTUDIO_API_KEY",), key_required=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", ("VLLM_API_KEY",), key_required=False, base_url_env="VLLM_BASE_URL"),
    "tgi": Preset("http://127.0.0.1:8080/v1", ("TGI_API_KEY",), key_required=False),
    "llama-server": Preset("http://127.0.0.1:8080/v1", ("LLAMA_API_KEY",), key_required=False),
    "llmkit": Preset("http://127.0.0.1:8000/v1", ("LLMKIT_API_KEY",), key_required=False, base_url_env="LLMKIT_BASE_URL"),
}
