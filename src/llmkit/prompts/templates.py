"""Prompt templates: Jinja2 chat messages with roles, variables, defaults and includes, kept as
files in a prompt library folder.

A prompt is a YAML file::

    name: summarize                       # default: the file's path without its suffix
    description: Summarise a text in a given style.
    model: local                          # optional: the model spec `run` uses when given none
    sampling: {temperature: 0, max_tokens: 200}          # optional Sampling fields
    variables: {style: brief}             # defaults; a call's variables override them
    messages:
      - role: system
        content: "{% include '_house_style.jinja' %}"
      - role: user
        content: |
          Summarise this in a {{ style }} way:
          {{ text }}

(``template: "..."`` instead of ``messages`` is one user message), or a ``.jinja`` file: an
optional ``---`` YAML front matter with the same keys, then the messages, each opened by a line
``system:``, ``user:`` or ``assistant:`` (Prompty's layout; no such line: one user message).
Roles are split before rendering, so a variable's value can never open a new message.

Files whose name starts with ``_`` are partials: never listed as prompts, only included.
``{% include %}`` paths are relative to the library folder and cannot leave it. Variables are
strict: a missing one raises :class:`~llmkit.ConfigError` naming it. A message that renders to
nothing (``{% if system %}…{% endif %}``) is left out; surrounding whitespace is trimmed.

Example:
    >>> from llmkit.prompts import prompt
    >>> p = prompt("summarize", folder="prompts")
    >>> p.show(text="Long text …")          # prints exactly the messages sent
    >>> p.run(lk.model(), text="Long text …").text
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import ConfigError
from ..core.sampling import Sampling, make_sampling
from ..core.types import Message

ROLES = ("system", "user", "assistant")
PROMPT_SUFFIXES = (".yaml", ".yml", ".jinja", ".j2")
#: How ``Prompt.show`` and ``llmkit prompt show`` print each message (role, then content).
SHOW_TEMPLATE = "--- {role} ---\n{content}\n"
_ROLE_LINE = re.compile(r"^(system|user|assistant)\s*:\s*$", re.M)
_FRONT = re.compile(r"\A---[ \t]*\n(?P<meta>.*?)\n---[ \t]*\n?", re.S)
_KEYS = {"name", "description", "model", "sampling", "variables", "messages", "template"}


def default_folder() -> Path:
    """``./prompts`` when it exists (a project's own prompts), else ``$LLMKIT_HOME/prompts``."""
    local = Path("prompts")
    if local.is_dir():
        return local
    from ..core.settings import home

    return home() / "prompts"


def _environment(folder: Path | None):
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    # Sandboxed: a prompt library may come from someone else; it may read variables, not call into Python.
    return SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(folder)) if folder else None,
                                undefined=jinja2.StrictUndefined, autoescape=False,
                                trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)


@dataclass
class Prompt:
    """A chat prompt: messages whose contents are Jinja2 templates, with default variables.

    Args:
        name: the prompt's name in its library.
        messages: ``(role, template)`` pairs, or dicts ``{"role", "content"}``.
        description: one line for ``llmkit prompt ls``.
        defaults: variable values used when a call does not give them.
        sampling: sampling fields ``run`` uses (a call's own fields win).
        model: a model spec ``run`` loads when it is given no model.
        folder: the library folder ``{% include %}`` reads from.
        path: the file the prompt came from (named in errors).
        lines: the file line of each message's first content line (for error messages).

    Example:
        >>> p = Prompt("greet", [("system", "Be {{ tone }}."), ("user", "Hello, I am {{ name }}.")],
        ...            defaults={"tone": "brief"})
        >>> [m.content for m in p.render(name="Ada")]
        ['Be brief.', 'Hello, I am Ada.']
    """

    name: str
    messages: list[Any]
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling | None = None
    model: str | None = None
    folder: Path | None = None
    path: Path | None = None
    lines: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        pairs = []
        for m in self.messages:
            role, content = (m["role"], m.get("content", "")) if isinstance(m, dict) else \
                (m.role, m.content) if isinstance(m, Message) else m
            if role not in ROLES:
                raise ConfigError(f"{self._where()}: role {role!r} is not one of {', '.join(ROLES)}")
            pairs.append((role, content))
        if not pairs:
            raise ConfigError(f"{self._where()}: a prompt needs at least one message")
        self.messages = pairs
        self.lines = list(self.lines) + [None] * (len(pairs) - len(self.lines))
        if isinstance(self.sampling, dict):
            self.sampling = make_sampling(self.sampling)
        self._env = _environment(self.folder)
        self._compiled = [self._compile(i, text) for i, (_, text) in enumerate(pairs)]

    def _where(self, line: int | None = None) -> str:
        where = str(self.path) if self.path else f"prompt {self.name!r}"
        return f"{where}:{line}" if line and self.path else where

    def _line(self, i: int, jinja_line: int | None) -> int | None:
        return self.lines[i] + (jinja_line or 1) - 1 if self.lines[i] else None

    def _compile(self, i: int, text: str):
        import jinja2

        try:
            return self._env.from_string(text)
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"{self._where(self._line(i, e.lineno))}: message {i + 1} ({self.messages[i][0]}): "
                              f"template error: {e.message}") from None

    @property
    def variables(self) -> list[str]:
        """Every variable the messages (and the files they include) use, sorted."""
        from jinja2 import meta

        found: set[str] = set()
        seen: set[str] = set()

        def walk(source: str) -> None:
            ast = self._env.parse(source)
            found.update(meta.find_undeclared_variables(ast))
            for ref in meta.find_referenced_templates(ast):
                if ref and ref not in seen and self.folder is not None:
                    seen.add(ref)
                    try:
                        walk(self._env.loader.get_source(self._env, ref)[0])
                    except Exception:  # a missing include is reported when rendering, with its name
                        pass

        for _, text in self.messages:
            walk(text)
        return sorted(found)

    @property
    def required(self) -> list[str]:
        """The variables a call must give (used, with no default)."""
        return [v for v in self.variables if v not in self.defaults]

    def render(self, /, **variables: Any) -> list[Message]:
        """The messages, with ``variables`` (over the defaults) filled in.

        Raises:
            ConfigError: a variable is missing (named), an include is missing, or a template fails.
        """
        values = {**self.defaults, **variables}
        out = [Message(role=role, content=text) for i, (role, _) in enumerate(self.messages)
               if (text := self._fill(i, values))]
        if not out:
            raise ConfigError(f"{self._where()}: every message rendered empty")
        return out

    def _fill(self, i: int, values: dict[str, Any]) -> str:
        """Message ``i``'s content with ``values`` filled in, trimmed; errors name the message."""
        import jinja2

        role = self.messages[i][0]
        try:
            return self._compiled[i].render(**values).strip()
        except jinja2.UndefinedError as e:
            m = re.match(r"'([^']+)' is undefined", e.message or "")
            what = f"needs the variable {m.group(1)!r}" if m else f"uses an undefined value ({e.message})"
            raise ConfigError(f"{self._where()}: message {i + 1} ({role}) {what}; given: "
                              f"{', '.join(sorted(values)) or 'none'}") from None
        except jinja2.TemplateNotFound as e:
            raise ConfigError(f"{self._where()}: message {i + 1} ({role}) includes {e.name!r}, which is not a "
                              f"file in the prompt folder {str(self.folder) if self.folder else '(none given)'}") from None
        except Exception as e:  # a filter's TypeError, a division by zero, the sandbox's SecurityError …
            raise ConfigError(f"{self._where()}: message {i + 1} ({role}): {type(e).__name__}: {e}") from None

    def show(self, /, **variables: Any) -> str:
        """Print (and return) exactly the messages :meth:`render` gives, one ``--- role ---`` header each."""
        text = format_messages(self.render(**variables))
        print(text)
        return text

    def run(self, model: Any = None, /, *, sampling: Sampling | dict | None = None, **variables: Any):
        """Render and send to ``model`` (a Model or a spec string; None: the prompt's own ``model``).

        Sampling is the prompt's ``sampling`` updated with ``sampling``. Returns the Completion.

        Example:
            >>> prompt("summarize").run(lk.model(), text=doc, sampling={"max_tokens": 64}).text
        """
        import llmkit as lk

        if model is None or isinstance(model, str):
            spec = model if model is not None else self.model
            if spec is None:
                raise ConfigError(f"{self._where()}: no model to run on: pass one (run(lk.model(), ...)) "
                                  "or give the prompt a `model:` spec")
            model = lk.model(spec)
        s = make_sampling(self.sampling, **(sampling.set_fields() if isinstance(sampling, Sampling) else sampling or {}))
        return model.chat(self.render(**variables), sampling=s)


def format_messages(messages: list[Message]) -> str:
    """Messages as plain text, one :data:`SHOW_TEMPLATE` block each (what ``show`` prints)."""
    return "\n".join(SHOW_TEMPLATE.format(role=m.role, content=m.content) for m in messages).rstrip("\n")


# --- files -----------------------------------------------------------------------------------
def _yaml_error(path: Path, e: Exception) -> ConfigError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e)
    return ConfigError(f"{where}: invalid YAML: {' '.join(str(problem).split())}")


def _node_line(node: Any, path: tuple) -> int | None:
    """The 1-based file line of the YAML node at ``path`` (keys and indices), or None."""
    import yaml

    for step in path:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            node = next((v for k, v in node.value if getattr(k, "value", None) == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            return None
        if node is None:
            return None
    block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")  # text starts below the indicator
    return node.start_mark.line + 1 + (1 if block else 0)


def _parse_spec(path: Path, data: Any, tree: Any, *, meta_offset: int = 0, body: str | None = None,
                body_offset: int = 0, folder: Path | None = None, name: str | None = None) -> Prompt:
    """A Prompt from a file's parsed YAML (``tree``: its node tree, for line numbers). A .jinja
    file passes its ``body``; the offsets are the file lines before the YAML and before the body."""
    def where(loc: tuple) -> str:
        line = _node_line(tree, loc) if tree is not None else None
        return f"{path}:{line + meta_offset}" if line else str(path)

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a prompt file is a mapping with name, description, messages, ... "
                          f"(got {type(data).__name__})")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise ConfigError(f"{where((unknown[0],))}: unknown key {unknown[0]!r}; accepted: {', '.join(sorted(_KEYS))}")
    for key, kind in (("name", str), ("description", str), ("model", str), ("template", str),
                      ("variables", dict), ("sampling", dict), ("messages", list)):
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise ConfigError(f"{where((key,))}: {key} must be a {kind.__name__}, got {data[key]!r}")
    lines: list[int | None] = []
    if body is not None:
        if "messages" in data or "template" in data:
            raise ConfigError(f"{path}: a .jinja prompt's messages are its body, not `messages:`/`template:`")
        messages, lines = _split_roles(path, body, body_offset)
    elif "messages" in data:
        if "template" in data:
            raise ConfigError(f"{where(('template',))}: give either messages or template, not both")
        messages = []
        for i, m in enumerate(data["messages"] or []):
            if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m:
                raise ConfigError(f"{where(('messages', i))}: message {i + 1} must be {{role: ..., content: ...}}, "
                                  f"got {m!r}")
            if not isinstance(m.get("content", ""), str):
                raise ConfigError(f"{where(('messages', i, 'content'))}: message {i + 1}'s content must be text")
            if m["role"] not in ROLES:
                raise ConfigError(f"{where(('messages', i, 'role'))}: role {m['role']!r} is not one of {', '.join(ROLES)}")
            messages.append((m["role"], m.get("content", "")))
            line = _node_line(tree, ("messages", i, "content"))
            lines.append(line + meta_offset if line else None)
    elif "template" in data:
        line = _node_line(tree, ("template",))
        messages, lines = [("user", data["template"])], [line + meta_offset if line else None]
    else:
        raise ConfigError(f"{path}: a prompt needs `messages:` (a list of role/content) or `template:`")
    try:
        sampling = make_sampling(data["sampling"]) if data.get("sampling") else None
    except ConfigError as e:
        raise ConfigError(f"{where(('sampling',))}: sampling: {e}") from None
    return Prompt(name=data.get("name") or name or path.stem, messages=messages,
                  description=data.get("description") or "", defaults=dict(data.get("variables") or {}),
                  sampling=sampling, model=data.get("model"), folder=folder, path=path, lines=lines)


def _split_roles(path: Path, body: str, offset: int) -> tuple[list[tuple[str, str]], list[int | None]]:
    """A .jinja body cut at its ``role:`` lines; ``offset`` is the number of file lines before the body."""
    marks = list(_ROLE_LINE.finditer(body))
    if not marks:
        return [("user", body)], [offset + 1]
    if body[:marks[0].start()].strip():
        raise ConfigError(f"{path}:{offset + 1}: text before the first role line (system:, user: or assistant:)")
    out, lines = [], []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        out.append((m.group(1), body[m.end():end].lstrip("\n")))
        lines.append(offset + body[:m.end()].count("\n") + 2)  # the line after "role:"
    return out, lines


def load_prompt(path: str | Path, folder: str | Path | None = None, name: str | None = None) -> Prompt:
    """One prompt file (``.yaml``/``.yml``/``.jinja``/``.j2``); ``folder`` is where includes are
    read from (default: the file's own folder); ``name`` is used when the file names none.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or its keys are wrong (``file:line: …``).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read prompt file {str(path)!r}: {e.strerror}") from None
    meta, meta_offset, body, body_offset = text, 0, None, 0
    if path.suffix in (".jinja", ".j2"):
        front = _FRONT.match(text)
        meta, meta_offset = (front.group("meta"), 1) if front else ("", 0)  # 1: the opening "---" line
        body = text[front.end():] if front else text
        body_offset = text[:front.end()].count("\n") if front else 0
    try:
        data, tree = yaml.safe_load(meta), yaml.compose(meta)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            mark.line += meta_offset
        raise _yaml_error(path, e) from None
    return _parse_spec(path, data, tree, meta_offset=meta_offset, body=body, body_offset=body_offset,
                       folder=Path(folder) if folder is not None else path.parent, name=name)


class PromptLibrary:
    """The prompts in a folder (searched recursively), by name.

    A prompt's name is its ``name:`` key, else its path under the folder without the suffix
    (``support/triage.yaml`` → ``support/triage``). Two files with one name is an error.

    Example:
        >>> lib = PromptLibrary("prompts")
        >>> lib.names()
        ['summarize', 'support/triage']
        >>> lib["summarize"].render(text="…")
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        if folder is not None and not self.folder.is_dir():
            raise ConfigError(f"prompt folder {str(self.folder)!r} does not exist")
        self._files: dict[str, Path] | None = None

    def _index(self) -> dict[str, Path]:
        if self._files is None:
            files: dict[str, Path] = {}
            if self.folder.is_dir():
                for path in sorted(self.folder.rglob("*")):
                    rel = path.relative_to(self.folder)
                    if path.suffix not in PROMPT_SUFFIXES or not path.is_file() or \
                            any(part.startswith(("_", ".")) for part in rel.parts):
                        continue
                    name = _declared_name(path) or rel.with_suffix("").as_posix()
                    if name in files:
                        raise ConfigError(f"two prompts are named {name!r}: {files[name]} and {path}")
                    files[name] = path
            self._files = files
        return self._files

    def names(self) -> list[str]:
        """The prompt names, sorted."""
        return sorted(self._index())

    def path(self, name: str) -> Path:
        files = self._index()
        if name not in files:
            shown = ", ".join(sorted(files)) or f"none; put .yaml or .jinja files in {self.folder}"
            raise ConfigError(f"no prompt named {name!r} in {self.folder}; prompts: {shown}")
        return files[name]

    def get(self, name: str) -> Prompt:
        """The prompt called ``name`` (its file is read now, so edits show at once)."""
        path = self.path(name)
        return load_prompt(path, folder=self.folder, name=path.relative_to(self.folder).with_suffix("").as_posix())

    __getitem__ = get

    def __contains__(self, name: str) -> bool:
        return name in self._index()

    def __iter__(self) -> Iterator[Prompt]:
        return (self.get(n) for n in self.names())

    def __len__(self) -> int:
        return len(self._index())


def _declared_name(path: Path) -> str | None:
    """The ``name:`` a prompt file declares, read cheaply (a bad file is reported when loaded)."""
    import yaml

    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix in (".jinja", ".j2"):
        front = _FRONT.match(text)
        text = front.group("meta") if front else ""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def prompt(name: str, folder: str | Path | None = None) -> Prompt:
    """The prompt ``name`` from a library folder (default :func:`default_folder`: ``./prompts``
    if it exists, else ``$LLMKIT_HOME/prompts``). A path to a prompt file also works.

    Example:
        >>> p = prompt("summarize")
        >>> p.run(lk.model(), text="…").text
    """
    as_path = Path(name)
    if as_path.suffix in PROMPT_SUFFIXES and as_path.is_file():
        return load_prompt(as_path, folder=folder)
    return PromptLibrary(folder).get(name)


def render(template: str, /, **variables: Any) -> str:
    """Render one Jinja2 string with strict variables (a missing one raises ConfigError naming it).

    Example:
        >>> render("Hello {{ name }}", name="Ada")
        'Hello Ada'
    """
    return Prompt("inline", [("user", template)])._fill(0, variables)


__all__ = ["Prompt", "PromptLibrary", "prompt", "load_prompt", "default_folder", "format_messages", "render",
           "SHOW_TEMPLATE", "ROLES"]
