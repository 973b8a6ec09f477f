"""Structured output: constraints enforced token by token on local models (llguidance masks),
by each provider's own mechanism remotely, and validated (with retries) everywhere.

    >>> import llmkit as lk
    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    ...     country: str
    >>> lk.model().json("Name a city in France.", schema=City, temperature=0)
    City(name='Paris', country='France')
"""
from ..core.errors import ConstraintError, StructuredOutputError
from .constraints import JSON, Choice, Constraint, Grammar, Invalid, JSONSchema, Regex, Typed, as_constraint

__all__ = ["Constraint", "JSON", "JSONSchema", "Typed", "Regex", "Choice", "Grammar", "as_constraint", "Invalid",
           "ConstraintError", "StructuredOutputError"]
