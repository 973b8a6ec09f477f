"""Training data: read, validate, apply the chat template, mask the loss, pack, split, batch.

Row formats (one JSON object per line of a .jsonl file, or a JSON list in a .json file):

    chat        {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}
    completion  {"prompt": "…", "completion": "…"}          prompt/completion may also be message lists
    text        {"text": "…"}                                plain language modelling, every token trained
    preference  {"prompt": "…", "chosen": "…", "rejected": "…"}      DPO, IPO, ORPO, SimPO, reward models
    kto         {"prompt": "…", "completion": "…", "label": true}    KTO's unpaired good/bad examples
    prompt      {"prompt": "…"}                              online methods (GRPO) and sequence distillation

Extra keys (``meta``, ``id``, …) are ignored. The loss is on assistant tokens only: for chat rows every
assistant turn (its text and end-of-turn token), for completion rows the completion. A bad row raises a
``ConfigError`` naming the file, the row number (1-based, counting lines) and the field.

Example:
    >>> rows = read_rows("chat.jsonl", "chat")
    >>> ex = encode_chat(tokenizer, rows[0]["messages"])      # {"input_ids": [...], "labels": [...]}
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import ConfigError

ROLES = ("system", "user", "assistant", "tool")
IGNORE = -100  # label of a token that is not trained (PyTorch's cross_entropy ignore_index)

FORMATS: dict[str, tuple[str, ...]] = {   # format → required fields
    "chat": ("messages",),
    "completion": ("prompt", "completion"),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "prompt": ("prompt",),
}


# --- reading and validating ------------------------------------------------------------------
def read_rows(path: str | Path, fmt: str | tuple[str, ...] = "auto") -> list[dict[str, Any]]:
    """Rows of ``path`` checked against ``fmt`` (one name, a tuple of accepted names, or "auto").

    Each row gets ``_row`` (its 1-based line or list index) and ``_format``; errors name both.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"data file {str(p)!r} does not exist; pass a .jsonl or .json file")
    raw = list(_parse(p))
    if not raw:
        raise ConfigError(f"data file {str(p)!r} is empty; it needs at least one row")
    accepted = tuple(FORMATS) if fmt == "auto" else (fmt,) if isinstance(fmt, str) else tuple(fmt)
    rows = []
    for n, row in raw:
        where = f"{p.name} row {n}"
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
        kind = _detect(row, accepted, where)
        _validate(row, kind, where)
        rows.append({**row, "_row": n, "_format": kind})
    kinds = {r["_format"] for r in rows}
    if len(kinds) > 1:
        first = {k: next(r["_row"] for r in rows if r["_format"] == k) for k in kinds}
        shown = ", ".join(f"{k} (row {first[k]})" for k in sorted(kinds))
        raise ConfigError(f"{p.name} mixes row formats: {shown}; use one format per file")
    return rows


def _parse(p: Path) -> Iterator[tuple[int, Any]]:
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        try:
            data = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p.name} is not valid JSON: {e.msg} at line {e.lineno}") from None
        if not isinstance(data, list):
            raise ConfigError(f"{p.name} must hold a JSON list of rows (or use .jsonl, one row per line)")
        yield from enumerate(data, 1)
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p.name} row {n}: not valid JSON ({e.msg} at column {e.colno})") from None


def _detect(row: dict, accepted: tuple[str, ...], where: str) -> str:
    # Most specific first: a kto row also has prompt+completion, a preference row also has prompt.
    for kind in ("preference", "kto", "chat", "completion", "text", "prompt"):
        if kind in accepted and all(k in row for k in FORMATS[kind]):
            return kind
    want = " or ".join("{" + ", ".join(FORMATS[k]) + "}" for k in accepted)
    have = ", ".join(sorted(k for k in row if not k.startswith("_"))) or "nothing"
    raise ConfigError(f"{where}: missing fields; expected {want}, found {have}")


def _validate(row: dict, kind: str, where: str) -> None:
    if kind == "chat":
        _check_messages(row["messages"], f"{where}: messages", need_assistant=True)
    elif kind == "text":
        _check_text(row["text"], f"{where}: text")
    else:
        for key in ("prompt", "completion", "chosen", "rejected"):
            if key in FORMATS[kind]:
                value = row[key]
                if isinstance(value, list):
                    _check_messages(value, f"{where}: {key}", need_assistant=False)
                else:
                    _check_text(value, f"{where}: {key}")
        if kind == "kto" and not isinstance(row["label"], bool):
            raise ConfigError(f"{where}: label is {row['label']!r}; expected true (desirable) or false (undesirable)")


def _check_text(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{where} is {type(value).__name__}; expected a string")
    if not value.strip():
        raise ConfigError(f"{where} is empty")


def _check_messages(messages: Any, where: str, need_assistant: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"{where} must be a non-empty list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ConfigError(f"{where}[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ConfigError(f"{where}[{i}].role is {m['role']!r}; accepted: {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise ConfigError(f"{where}[{i}].content is {type(m['content']).__name__}; expected a string")
    if need_assistant:
        if not any(m["role"] == "assistant" for m in messages):
            raise ConfigError(f"{where} has no assistant turn; there is nothing to train on")
        if messages[0]["role"] == "assistant":
            raise ConfigError(f"{where}[0] is an assistant turn; a conversation starts with a system or user turn")


# --- tokenising ------------------------------------------------------------------------------
def as_messages(value: str | list[dict], role: str) -> list[dict]:
    """A prompt or completion as a message list (a string becomes one ``role`` turn)."""
    return [{"role": role, "content": value}] if isinstance(value, str) else [{"role": m["role"], "content": m["content"]} for m in value]


def encode_chat(tokenizer, messages: list[dict], train: str = "all") -> dict[str, list[int]]:
    """Token ids of a conversation in the chat template, labels only on assistant turns.

    Args:
        train: ``"all"`` trains every assistant turn, ``"last"`` only the final one.

    The assistant spans are found as characters: the template rendered up to turn *i* with the
    generation prompt ends where turn *i*'s text starts, and rendered through turn *i* it ends
    after its end-of-turn token. Tokens whose characters fall inside a span are trained.
    """
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    render = lambda msgs, gen: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)  # noqa: E731
    full = render(messages, False)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or (train == "last" and i != last):
            continue
        start, through = render(messages[:i], True), render(messages[: i + 1], False)
        if not (through.startswith(start) and full.startswith(through)):
            raise ConfigError("the tokenizer's chat template renders a conversation differently from its prefixes, "
                              "so the assistant tokens cannot be located; train on prompt/completion rows with "
                              "chat_template=false instead")
        spans.append((len(start), len(through)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [t if any(a <= s < b for a, b in spans) else IGNORE for t, (s, _) in zip(ids, enc["offset_mapping"])]
    return {"input_ids": ids, "labels": labels}


def encode_pair(tokenizer, prompt: str | list[dict], completion: str | list[dict], chat_template: bool = True) -> dict[str, list[int]]:
    """``prompt`` then ``completion``, labels on the completion only.

    With a chat template (and ``chat_template``), a string prompt is a user turn and a string
    completion an assistant turn; otherwise the raw texts are concatenated and EOS appended.
    """
    if chat_template and getattr(tokenizer, "chat_template", None):
        return encode_chat(tokenizer, as_messages(prompt, "user") + as_messages(completion, "assistant"), train="last")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ConfigError("message-list prompts need the tokenizer's chat template; this tokenizer has none")
    p = tokenizer(prompt)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return {"input_ids": p + c + eos, "labels": [IGNORE] * len(p) + c + eos}


def encode_text(tokenizer, text: str) -> dict[str, list[int]]:
    """Plain text, every token trained, EOS appended."""
    ids = tokenizer(text)["input_ids"] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
    return {"input_ids": ids, "labels": list(ids)}


def encode_sft_row(tokenizer, row: dict, chat_template: bool = True) -> dict[str, list[int]]:
    """One chat, completion or text row as ``{"input_ids", "labels"}``."""
    kind = row.get("_format") or _detect(row, ("chat", "completion", "text"), "row")
    if kind == "chat":
        return encode_chat(tokenizer, row["messages"])
    if kind == "text":
        return encode_text(tokenizer, row["text"])
    return encode_pair(tokenizer, row["prompt"], row["completion"], chat_template)


def prompt_ids(tokenizer, prompt: str | list[dict], chat_template: bool = True) -> list[int]:
    """The token ids a model is given to answer ``prompt`` (with the generation prompt)."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(as_messages(prompt, "user"), tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt))["input_ids"]


def truncate(ex: dict[str, list[int]], max_length: int) -> dict[str, list[int]]:
    return {k: v[:max_length] for k, v in ex.items()}


def trained_tokens(ex: dict[str, list[int]]) -> int:
    return sum(1 for t in ex["labels"] if t != IGNORE)


def encode_sft(tokenizer, rows: list[dict], max_length: int, chat_template: bool = True) -> tuple[list[dict], int]:
    """Encode and truncate SFT rows; examples left with no trained token are dropped.

    Returns:
        (examples, dropped): ``dropped`` counts rows whose answer lay wholly past ``max_length``.
    """
    out, dropped = [], 0
    for row in rows:
        ex = truncate(encode_sft_row(tokenizer, row, chat_template), max_length)
        if trained_tokens(ex) == 0:
            dropped += 1
        else:
            out.append(ex)
    if not out:
        raise ConfigError(f"no example has a trained token within max_length={max_length}; raise --max-length")
    return out, dropped


# --- splitting, packing, batching ------------------------------------------------------------
def split(rows: list, val_split: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded shuffle, then ``val_split`` of the rows held out (at least one)."""
    if val_split <= 0 or len(rows) < 2:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = min(len(rows) - 1, max(1, round(len(rows) * val_split)))
    held = set(order[:n_val])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def pack(examples: list[dict], max_length: int) -> list[dict]:
    """Concatenate examples into rows of at most ``max_length`` tokens (first-fit, in order).

    Each packed row carries ``position_ids`` that restart at 0 for every example; transformers
    reads those as sequence boundaries and keeps attention inside each example, so a packed row
    trains exactly as its examples would one by one, without padding.
    """
    rows, cur = [], {"input_ids": [], "labels": [], "position_ids": []}
    for ex in examples:
        if cur["input_ids"] and len(cur["input_ids"]) + len(ex["input_ids"]) > max_length:
            rows.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += ex["input_ids"]
        cur["labels"] += ex["labels"]
        cur["position_ids"] += list(range(len(ex["input_ids"])))
    if cur["input_ids"]:
        rows.append(cur)
    return rows


def collate(examples: list[dict], pad_id: int) -> dict[str, Any]:
    """Right-pad a list of examples into tensors (labels padded with -100, attention mask 0)."""
    import torch

    n = max(len(e["input_ids"]) for e in examples)
    batch: dict[str, Any] = {
        "input_ids": torch.tensor([e["input_ids"] + [pad_id] * (n - len(e["input_ids"])) for e in examples]),
        "labels": torch.tensor([e["labels"] + [IGNORE] * (n - len(e["labels"])) for e in examples]),
    }
    if "position_ids" in examples[0]:
        if len(examples) > 1:  # packed rows of different lengths: pad positions continue so no new sequence starts
            batch["position_ids"] = torch.tensor([e["position_ids"] + list(range(len(e["position_ids"]), n)) for e in examples])
        else:
            batch["position_ids"] = torch.tensor([examples[0]["position_ids"]])
    else:
        batch["attention_mask"] = torch.tensor([[1] * len(e["input_ids"]) + [0] * (n - len(e["input_ids"])) for e in examples])
    return batch


def batches(items: list, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list]:
    """The epoch's batches: a permutation seeded by (seed, epoch), so a resumed run sees the same order."""
    order = list(range(len(items)))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [[items[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]


def read_split(data: str, eval_data: str | None, val_split: float, seed: int, fmt) -> tuple[list[dict], list[dict]]:
    """(train rows, validation rows) of a run: ``eval_data`` if given, else ``val_split`` of ``data`` held out."""
    if not data:
        raise ConfigError("no training data: pass --data FILE.jsonl (or data: in the recipe)")
    rows = read_rows(data, fmt)
    if eval_data:
        return rows, read_rows(eval_data, fmt)
    return split(rows, val_split, seed)
