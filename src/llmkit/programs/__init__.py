"""Declarative LM programs (DSPy-style): signatures, modules, optimisers, evaluation.

    >>> import llmkit as lk
    >>> from llmkit.programs import ChainOfThought, BootstrapFewShot, Example, evaluate, exact_match
    >>> qa = ChainOfThought("question -> answer", model=lk.model(), temperature=0)
    >>> train = [Example(question="2 + 2?", answer="4").with_inputs("question"), ...]
    >>> compiled = BootstrapFewShot(metric=exact_match).compile(qa, trainset=train)
    >>> evaluate(compiled, dev, exact_match).score
    >>> compiled.inspect()                       # the last prompt, exactly as sent
    >>> compiled.save("qa.json")

Files: ``signatures.py`` (typed fields), ``example.py`` (Example, Prediction), ``module.py``
(Module: composition, inspect, save/load), ``predict.py`` (Predict, ChainOfThought and the prompt
templates), ``react.py``, ``program_of_thought.py``, ``multi_chain.py``, ``refine.py`` (BestOfN,
Refine), ``evaluate.py`` (evaluate, metrics), ``optimizers.py`` (LabeledFewShot, BootstrapFewShot,
random search, KNNFewShot), ``copro.py`` (instruction search).
"""
from .copro import COPRO
from .evaluate import (
                         EvalRow,
                         EvaluationResult,
                         assertion_metric,
                         evaluate,
                         exact_match,
                         normalize,
)
from .example import Example, Prediction
from .module import Module, using
from .multi_chain import MultiChainComparison
from .optimizers import (
                         BootstrapFewShot,
                         BootstrapFewShotWithRandomSearch,
                         KNNFewShot,
                         KNNProgram,
                         LabeledFewShot,
)
from .predict import ChainOfThought, Predict
from .program_of_thought import ProgramOfThought, ProgramOfThoughtError
from .react import ReAct
from .refine import BestOfN, Refine
from .signatures import InputField, OutputField, Signature, make_signature

__all__ = [
                         "COPRO",
                         "BestOfN",
                         "BootstrapFewShot",
                         "BootstrapFewShotWithRandomSearch",
                         "ChainOfThought",
                         "EvalRow",
                         "EvaluationResult",
                         "Example",
                         "InputField",
                         "KNNFewShot",
                         "KNNProgram",
                         "LabeledFewShot",
                         "Module",
                         "MultiChainComparison",
                         "OutputField",
                         "Predict",
                         "Prediction",
                         "ProgramOfThought",
                         "ProgramOfThoughtError",
                         "ReAct",
                         "Refine",
                         "Signature",
                         "assertion_metric",
                         "evaluate",
                         "exact_match",
                         "make_signature",
                         "normalize",
                         "using",
]
