"""``Sampling``: every knob of token selection, validated once, honoured by every backend.

A field left at ``None`` means "the backend's default". A backend that cannot honour a
field that *is* set raises :class:`UnsupportedParameterError` naming it.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, UnsupportedParameterError


class Sampling(BaseModel):
    """How to pick tokens. ``temperature=0`` means greedy.

    Example:
        >>> Sampling(temperature=0.7, top_p=0.9, stop=["\\n\\n"], max_tokens=64)
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    temperature: float | None = Field(None, ge=0, le=5, description="0 = greedy; higher = more random")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus: keep the smallest set of tokens whose probability sums to top_p")
    top_k: int | None = Field(None, ge=0, description="keep the k most likely tokens (0 = off)")
    min_p: float | None = Field(None, ge=0, le=1, description="drop tokens less likely than min_p × the top token's probability")
    typical_p: float | None = Field(None, gt=0, le=1, description="locally typical sampling mass")
    repetition_penalty: float | None = Field(None, gt=0, description="CTRL-style: divide positive logits of seen tokens by this (1 = off)")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="OpenAI-style: subtract count × this from seen tokens' logits")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="OpenAI-style: subtract this once from every seen token's logit")
    seed: int | None = Field(None, description="seed for reproducible sampling")
    stop: list[str] | None = Field(None, description="cut the output before the first of these strings")
    max_tokens: int | None = Field(None, ge=1, description="most new tokens to generate")
    logprobs: bool | None = Field(None, description="return the log-probability of each generated token")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="with logprobs: how many alternatives per token")
    num_beams: int | None = Field(None, ge=1, description="beam search width (hf backend only; 1 = off)")
    penalty_alpha: float | None = Field(None, ge=0, le=1, description="contrastive search degeneration penalty (hf backend only; needs top_k > 1)")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def set_fields(self) -> dict[str, Any]:
        """Only the fields the user set (not None)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 and not self.num_beams and self.penalty_alpha is None

    def check(self, backend: str, supported: set[str] | frozenset[str]) -> None:
        """Raise UnsupportedParameterError for a set field not in ``supported``."""
        for name, value in self.set_fields().items():
            if name in supported:
                continue
            if name == "num_beams" and value == 1:  # 1 beam is plain decoding
                continue
            raise UnsupportedParameterError(name, backend, f"supported fields are {', '.join(sorted(supported))}")


FIELDS = frozenset(Sampling.model_fields)


def make_sampling(sampling: Sampling | dict | None = None, **fields: Any) -> Sampling:
    """Merge a Sampling (or dict) with keyword overrides; errors name the bad field and value."""
    base = sampling.set_fields() if isinstance(sampling, Sampling) else dict(sampling or {})
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise ConfigError(f"unknown sampling option {unknown[0]!r}; accepted: {', '.join(sorted(FIELDS))}")
    base.update({k: v for k, v in fields.items() if v is not None})
    try:
        return Sampling(**base)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "sampling"
        raise ConfigError(f"{field}={err.get('input')!r} is invalid: {err['msg']}") from None

