"""Prompting: Jinja2 chat templates and prompt libraries, few-shot selection within a token
budget, chain-of-thought with answer extraction, self-consistency, least-to-most, step-back,
and the ReAct format shared with the agents.

    >>> from llmkit.prompts import prompt, FewShot, chain_of_thought, self_consistency
    >>> p = prompt("summarize")                       # ./prompts/summarize.yaml (or $LLMKIT_HOME/prompts)
    >>> p.show(text="…"); p.run(lk.model(), text="…").text
    >>> v = self_consistency(lk.model(), "What is 17 * 3?", n=5, temperature=0.7, number=True)
    >>> v.answer, v.agreement

Every prompt text llmkit builds here is a module constant (``COT_TRIGGER``, ``EXAMPLE_TEMPLATE``,
``LEAST_TO_MOST_DECOMPOSE``, ``REACT_TEMPLATE`` …): print it, or pass your own.
"""
from .cot import (ANSWER_EXTRACTION_TEMPLATE, ANSWER_FORMAT, ANSWER_PATTERNS, COT_TEMPLATE, COT_TRIGGER,
                  LEAST_TO_MOST_DECOMPOSE, LEAST_TO_MOST_SOLVE, LEAST_TO_MOST_SOLVED, NUMBER_ANSWER_REGEX,
                  NUMBER_PATTERN, STEP_BACK_ANSWER_TEMPLATE, STEP_BACK_TEMPLATE, CoTResult, LeastToMost, StepBack,
                  Vote, answer_by_call, chain_of_thought, cot_messages, extract_answer, extract_number,
                  least_to_most, majority_vote, normalize_answer, parse_subquestions, self_consistency, step_back)
from .fewshot import (EXAMPLE_SEPARATOR, EXAMPLE_TEMPLATE, INLINE_TEMPLATE, MESSAGE_OVERHEAD, RATIONALE_TEMPLATE,
                      STRATEGIES, STYLES, Example, FewShot, approx_tokens, as_example, count_tokens, example_text,
                      example_turns, format_examples, select_examples)
from .react import REACT_FORMAT_ERROR, REACT_STOP, REACT_TEMPLATE, ReactStep, parse_react, react_prompt, render_tools
from .templates import (ROLES, SHOW_TEMPLATE, Prompt, PromptLibrary, default_folder, format_messages, load_prompt,
                        prompt, render)

__all__ = [
    # templates and libraries
    "Prompt", "PromptLibrary", "prompt", "load_prompt", "default_folder", "format_messages", "render",
    "SHOW_TEMPLATE", "ROLES",
    # few-shot
    "Example", "FewShot", "select_examples", "format_examples", "example_turns", "example_text", "as_example",
    "count_tokens", "approx_tokens", "STRATEGIES", "STYLES", "EXAMPLE_TEMPLATE", "INLINE_TEMPLATE",
    "RATIONALE_TEMPLATE", "EXAMPLE_SEPARATOR", "MESSAGE_OVERHEAD",
    # chain of thought, self-consistency, least-to-most, step-back
    "COT_TRIGGER", "COT_TEMPLATE", "ANSWER_FORMAT", "ANSWER_EXTRACTION_TEMPLATE", "ANSWER_PATTERNS",
    "NUMBER_PATTERN", "NUMBER_ANSWER_REGEX", "LEAST_TO_MOST_DECOMPOSE", "LEAST_TO_MOST_SOLVE",
    "LEAST_TO_MOST_SOLVED", "STEP_BACK_TEMPLATE", "STEP_BACK_ANSWER_TEMPLATE",
    "CoTResult", "Vote", "LeastToMost", "StepBack", "cot_messages", "chain_of_thought", "answer_by_call",
    "extract_answer", "extract_number", "normalize_answer", "majority_vote", "self_consistency",
    "parse_subquestions", "least_to_most", "step_back",
    # ReAct (defined in llmkit.agents.react)
    "REACT_TEMPLATE", "REACT_STOP", "REACT_FORMAT_ERROR", "ReactStep", "parse_react", "react_prompt", "render_tools",
]
