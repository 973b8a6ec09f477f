"""The ReAct text format (Thought / Action / Action Input / Observation / Final Answer), shared
with the agents: the one definition lives in :mod:`llmkit.agents.react`, re-exported here so a
prompt author finds it beside the other prompting techniques.

    >>> from llmkit.prompts import REACT_TEMPLATE, parse_react
    >>> print(REACT_TEMPLATE)                    # the visible template; pass your own to react_prompt
    >>> parse_react("Thought: done\\nFinal Answer: 5").final
    '5'
"""
from ..agents.react import FORMAT_ERROR as REACT_FORMAT_ERROR
from ..agents.react import REACT_TEMPLATE, ReactStep, parse_react, react_prompt, render_tools
from ..agents.react import STOP as REACT_STOP

__all__ = ["REACT_TEMPLATE", "REACT_STOP", "REACT_FORMAT_ERROR", "ReactStep", "parse_react", "react_prompt",
           "render_tools"]
