"""``ProgramOfThought``: the model writes Python, the sandbox runs it, the outputs come from stdout
(Chen et al., 2022). Code that fails — an exception, a timeout, output that does not parse as
the output fields — goes back to the model with the error, up to ``max_iters`` attempts.

    >>> pot = ProgramOfThought("question -> answer: int", model=lk.model())
    >>> pot(question="What is the sum of the first 100 primes?").answer
    24133
    >>> pot.inspect(2)          # the code asked for, and the fix after an error

The code runs in ``llmkit.agents.sandbox.run_python`` (no network, no files outside its own
directory, memory and time limits); ``pot.runs`` keeps the last run's attempts (code, result).
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..core.errors import LLMKitError
from .example import Prediction
from .module import Module
from .predict import Predict
from .signatures import (
    InputField,
    OutputField,
    Signature,
    derive,
    ensure_signature,
    type_name,
)

GENERATE_TEMPLATE = """{instructions}

Write Python code (standard library only) that computes the outputs. {how}"""
REGENERATE_TEMPLATE = """{instructions}

The previous code failed. Fix it: write Python code (standard library only) that computes the outputs. {how}"""
PRINT_ONE = "The code must print the value of `{name}` ({type}) alone on its last line of output."
PRINT_MANY = "The code must print, on its last line of output, one JSON object with the keys {names}."
CODE_DESC = "Python code; the printed output is the answer"


class ProgramOfThoughtError(LLMKitError):
    """The model's code still failed after ``max_iters`` attempts; ``code`` and ``error`` say how."""

    def __init__(self, message: str, *, code: str = "", error: str = ""):
        super().__init__(message)
        self.code, self.error = code, error


class ProgramOfThought(Module):
    """Answer a signature by writing and running Python.

    Args:
        signature: as for Predict; its outputs are read from what the code prints.
        max_iters: attempts (the first code, then fixes) before ProgramOfThoughtError.
        timeout: seconds each run may take in the sandbox.
        model, **sampling: for both inner predictors (``generate`` and ``regenerate``).
    """

    def __init__(self, signature: str | type[Signature], *, max_iters: int = 3, timeout: float = 10.0,
                 model: Any = None, **sampling: Any):
        self.signature = ensure_signature(signature)
        self.max_iters, self.timeout = max_iters, timeout
        sig, outs = self.signature, self.signature.output_fields
        how = (PRINT_ONE.format(name=outs[0], type=type_name(sig.model_fields[outs[0]].annotation)) if len(outs) == 1
               else PRINT_MANY.format(names=", ".join(outs)))
        code = [("code", str, OutputField(desc=CODE_DESC))]
        fix_inputs = [("previous_code", str, InputField(desc="the code that failed")),
                      ("error", str, InputField(desc="what went wrong when it ran"))]
        write = GENERATE_TEMPLATE.format(instructions=sig.instructions, how=how)
        fix = REGENERATE_TEMPLATE.format(instructions=sig.instructions, how=how)
        self.generate = Predict(derive(sig, instructions=write, outputs=code, keep_outputs=False), model=model,
                                **sampling)
        self.regenerate = Predict(derive(sig, instructions=fix, inputs=fix_inputs, outputs=code, keep_outputs=False),
                                  model=model, **sampling)
        self.runs: list[tuple[str, Any]] = []

    def forward(self, **inputs: Any) -> Prediction:
        from ..agents.sandbox import run_python

        self.runs = []
        code = strip_fences(self.generate(**inputs).code)
        for attempt in range(self.max_iters):
            result = run_python(code, timeout=self.timeout)
            self.runs.append((code, result))
            if result.ok:
                try:
                    return Prediction(**self.parse(result.stdout), code=code)
                except ValueError as e:
                    error = f"the code ran, but its output could not be read: {e}"
            else:
                error = (result.message + "\n" if result.message else "") + (result.stderr.strip()[-2000:] or
                                                                              f"exit code {result.exit_code}")
            if attempt + 1 < self.max_iters:
                code = strip_fences(self.regenerate(**inputs, previous_code=code, error=error).code)
        raise ProgramOfThoughtError(f"the generated code failed {self.max_iters} time(s); last error: {error[:500]}",
                                    code=code, error=error)

    def parse(self, stdout: str) -> dict[str, Any]:
        """The output fields from what the code printed (ValueError saying why when it cannot)."""
        sig, outs = self.signature, self.signature.output_fields
        lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
        if not lines:
            raise ValueError("it printed nothing")
        if len(outs) == 1:
            t = sig.model_fields[outs[0]].annotation
            if t is str:
                return {outs[0]: stdout.strip()}
            return {outs[0]: _validate(TypeAdapter(t), lines[-1].strip())}
        model = sig.output_model()
        try:
            obj = model.model_validate_json(lines[-1])
        except ValidationError as e:
            raise ValueError(f"the last line is not a JSON object with {', '.join(outs)}: "
                             f"{e.errors()[0]['msg']}") from None
        return {n: getattr(obj, n) for n in outs}


def _validate(adapter: TypeAdapter, text: str) -> Any:
    try:
        return adapter.validate_json(text)
    except ValidationError:
        pass
    try:
        return adapter.validate_python(text)  # "Paris" for a Literal, a bare word for str-like types
    except ValidationError as e:
        raise ValueError(f"{text[:200]!r}: {e.errors()[0]['msg']}") from None


_FENCE = re.compile(r"^```[\w+-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def strip_fences(code: str) -> str:
    """The code without a Markdown fence around it (models add them even inside JSON)."""
    code = code.strip()
    m = _FENCE.match(code)
    return m.group(1) if m else code

