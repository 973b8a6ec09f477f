"""Settings of synthetic data generation (:mod:`llmkit.train.synth`), one class per command.

``FilterConfig`` holds what every command shares for cleaning rows (near-duplicate removal, the
LLM judge); ``SynthConfig`` adds what every generator shares (how many rows, temperature, seed,
patience); ``InstructConfig`` what the two instruction methods share (the answering call's
temperature, max_tokens); each method adds its own knobs. The CLI flags of ``llmkit train synth <command>`` are
made from these classes, so ``--help`` lists exactly what a command honours.

Example:
    >>> from llmkit.train.synth.config import SelfInstructConfig
    >>> SelfInstructConfig(n=100, temperature=1.0, judge_threshold=4)
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Evol-Instruct's operations: four in-depth evolutions (Xu et al., 2023, §3.1) and in-breadth.
OPERATIONS = ("constraints", "deepen", "concretize", "reasoning", "breadth")

#: Self-Instruct's filter (Wang et al., 2022, §2.3): a language model cannot act on these.
BLOCKED_WORDS = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                 "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram"]

#: Questions whose answer is a span of the text (wh-questions); a yes/no question's answer says nothing.
WH_QUESTION = r"^(What|Who|Whom|Whose|When|Where|Which|Why|How|In what|In which) [^?\n]+\?$"


class FilterConfig(BaseModel):
    """How rows are cleaned: near-duplicates dropped, then an LLM judge's low scores dropped."""

    model_config = ConfigDict(extra="forbid")

    dedup: bool = Field(True, description="drop near-duplicate rows (Jaccard of word shingles), keeping the first")
    dedup_threshold: float = Field(0.9, gt=0, le=1, description="rows at least this similar are duplicates "
                                   "(Jaccard of shingles; cosine of embeddings with --embed)")
    shingle_size: int = Field(2, ge=1, description="words per shingle; one changed word among L keeps a Jaccard "
                              "of (L - 2k + 1) / (L + 1), so 2 makes rows of 39+ words duplicates at 0.9")
    embed: bool = Field(False, description="also drop rows whose all-MiniLM-L6-v2 embeddings have a cosine of at "
                        "least dedup_threshold (paraphrases, not only copies)")
    judge_threshold: int | None = Field(None, ge=1, le=5, description="grade each row 1-5 with an LLM judge and keep "
                                        "rows scoring at least this; unset: no judge")


class SynthConfig(FilterConfig):
    """What every generator shares."""

    n: int = Field(20, ge=1, description="rows to generate")
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature of the calls that invent "
                               "instructions, evolutions and questions (diversity comes from here)")
    seed: int | None = Field(0, description="seeds the choice of examples, chunks and operations; where the "
                             "backend takes a seed, call i is sampled with seed + i (reproducible, never repeated)")
    patience: int = Field(10, ge=1, description="stop after this many calls in a row that add no row")


class InstructConfig(SynthConfig):
    """What the instruction generators share: they write free text, then answer it in a second call."""

    response_temperature: float | None = Field(None, ge=0, le=2, description="temperature of the calls that "
                                               "answer the instructions; unset: temperature")
    max_tokens: int = Field(512, ge=1, description="most tokens of a free-text reply (instructions, answers)")
    keep_truncated: bool = Field(False, description="keep answers cut off by max_tokens (they teach the model to "
                                 "stop mid-sentence)")

    @property
    def answer_temperature(self) -> float:
        return self.temperature if self.response_temperature is None else self.response_temperature


class SelfInstructConfig(InstructConfig):
    """Self-Instruct (Wang et al., 2022): new tasks from a few in-context seed tasks."""

    num_seeds: int = Field(8, ge=1, description="tasks shown in each prompt (8 in the paper)")
    num_machine: int = Field(2, ge=0, description="of those, how many are earlier generated tasks once there are "
                             "some (2 in the paper; the rest are seed tasks)")
    new_per_call: int = Field(4, ge=1, description="new tasks asked for in each prompt")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="drop a new task whose ROUGE-L with any task in "
                                   "the pool reaches this (0.7 in the paper)")
    min_words: int = Field(3, ge=1, description="drop tasks with fewer words")
    max_words: int = Field(150, ge=1, description="drop tasks with more words")
    blocked_words: list[str] = Field(default_factory=lambda: list(BLOCKED_WORDS),
                                     description="drop tasks with any of these words (things a text model cannot do)")

    @model_validator(mode="after")
    def _fits(self) -> SelfInstructConfig:
        if self.num_machine > self.num_seeds:
            raise ValueError(f"num_machine={self.num_machine} cannot exceed num_seeds={self.num_seeds}")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words={self.min_words} cannot exceed max_words={self.max_words}")
        return self


class EvolConfig(InstructConfig):
    """Evol-Instruct (WizardLM, Xu et al., 2023): instructions rewritten harder, round after round."""

    n: int | None = Field(None, ge=1, description="stop after this many rows; unset: every instruction, every round")
    rounds: int = Field(3, ge=1, description="evolution rounds; each round evolves every instruction once "
                        "(the paper ran 4)")
    operations: list[str] = Field(default_factory=lambda: list(OPERATIONS),
                                  description=f"operations drawn from, uniformly: {', '.join(OPERATIONS)}")
    equality_check: bool = Field(False, description="also ask the model whether the evolved instruction equals "
                                 "the original (the paper's information-gain check; one more call each)")

    @field_validator("operations")
    @classmethod
    def _known(cls, ops: list[str]) -> list[str]:
        unknown = [op for op in ops if op not in OPERATIONS]
        if unknown or not ops:
            raise ValueError(f"unknown operation {unknown[0] if unknown else '(none given)'!r}; "
                             f"accepted: {', '.join(OPERATIONS)}")
        return ops


class QAConfig(SynthConfig):
    """Question/answer pairs grounded in the chunks of documents (JSON replies, sized by the two
    length limits below, so no max_tokens)."""

    min_chunk_words: int = Field(20, ge=1, description="skip chunks with fewer words (headings, stubs)")
    max_question_chars: int = Field(200, ge=10, description="longest question, in characters")
    max_answer_chars: int = Field(300, ge=1, description="longest answer, in characters")
    question_pattern: str | None = Field(WH_QUESTION, description="regex every question must match (enforced "
                                         "token by token on local models); empty or None: any question")
    min_support: float = Field(0.6, ge=0, le=1, description="least share of the answer's content words that "
                               "must occur in the chunk")
    max_copied_words: int = Field(10, ge=2, description="drop questions that copy this many consecutive words "
                                  "of the chunk (they give the answer away)")
    with_context: bool = Field(False, description="put the chunk in the user turn (reading-comprehension rows "
                               "for RAG) instead of the question alone (closed-book rows)")
