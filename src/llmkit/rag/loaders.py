"""Document loaders: files and folders → ``Document(text, metadata)``.

One plain function per format, chosen by suffix through the ``LOADERS`` dict. Every document
carries ``source`` (the resolved path), ``title``, ``mtime``, ``content_hash`` (sha256 of the
file bytes, so a knowledge base can tell a changed file from an unchanged one) and ``format``;
PDFs add ``page``, CSVs ``sheet``/``row``, JSON ``index``, JSONL ``line``.

Markdown, HTML and DOCX come out as markdown-style text (headings as ``#`` lines) so the
header-aware splitter can follow the structure. pypdf, python-docx and BeautifulSoup are
imported inside their loaders (``pip install 'llmkit[rag]'``).

Example:
    >>> from llmkit.rag.loaders import load, load_folder
    >>> docs = load("notes/intro.md")
    >>> docs[0].metadata["title"], docs[0].metadata["content_hash"][:8]
    ('Introduction', '3f2a9c1e')
    >>> docs = list(load_folder("docs", glob="**/*.md", exclude=["drafts/*"]))
"""
from __future__ import annotations

import codecs
import csv
import fnmatch
import glob as globlib
import hashlib
import inspect
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.errors import ConfigError


@dataclass
class Document:
    """A piece of text and where it came from.

    Attributes:
        text: the extracted text (markdown-style headings for md/html/docx).
        metadata: ``source``, ``title``, ``mtime``, ``content_hash``, ``format`` and the
            per-format keys (``page``, ``sheet``/``row``, ``index``, ``line``, record fields).
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


# --- shared helpers ---------------------------------------------------------------------------

def _read(path: str | Path, fmt: str) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and the metadata every document of it shares."""
    p = Path(path)
    try:
        data = p.read_bytes()
        mtime = p.stat().st_mtime
    except OSError as e:
        raise ConfigError(f"cannot read {str(p)!r}: {e.strerror or e}") from None
    meta = {"source": str(p.resolve()), "title": p.stem, "mtime": mtime,
            "content_hash": hashlib.sha256(data).hexdigest(), "format": fmt}
    return data, meta


_BOMS = [(codecs.BOM_UTF8, "utf-8"),  # UTF-32 LE before UTF-16 LE: its BOM starts with the same two bytes
         (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode file bytes: a BOM decides, else UTF-8, else latin-1 (which never fails).

    Returns:
        ``(text, encoding)``; the encoding lands in the document's metadata so a mis-decoded
        file can be spotted.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(enc), enc
            except UnicodeDecodeError:
                break  # a lying BOM: fall through to the guesses below
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # the usual non-UTF-8 text; latin-1 decodes any byte


def _missing(lib: str, pip_name: str) -> ConfigError:
    return ConfigError(f"{lib} is not installed ({pip_name} is needed to load this format): "
                       "pip install 'llmkit[rag]'")


def _corrupt(path: str | Path, fmt: str, e: Exception) -> ConfigError:
    return ConfigError(f"cannot read {str(path)!r} as {fmt}: {type(e).__name__}: {e}")


def _clean_lines(text: str) -> str:
    """Strip every line and keep at most one blank line between blocks."""
    lines = [ln.strip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- text and markdown ------------------------------------------------------------------------

def load_text(path: str | Path) -> list[Document]:
    """A plain-text file as one document (UTF-8, BOM-aware, latin-1 fallback)."""
    data, meta = _read(path, "text")
    text, meta["encoding"] = decode_text(data)
    return [Document(text, meta)]


_H1 = re.compile(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$")


def markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading (``# Title``) outside code fences, or None."""
    fence = None
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith(("```", "~~~")):
            fence = None if fence and s.startswith(fence) else (fence or s[:3])
            continue
        if not fence and (m := _H1.match(line)):
            return m.group(1).strip()
    return None


def load_markdown(path: str | Path) -> list[Document]:
    """A markdown file as one document; the text keeps its ``#`` lines for the splitter."""
    data, meta = _read(path, "markdown")
    text, meta["encoding"] = decode_text(data)
    meta["title"] = markdown_title(text) or meta["title"]
    return [Document(text, meta)]


# --- html -------------------------------------------------------------------------------------

_DROP = [  # bs4 already leaves script/style strings out of get_text; listed so no parser setting brings them back
    "script", "style", "nav", "noscript", "template", "svg", "iframe", "head"]
_BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "li", "ul", "ol",
           "tr", "table", "blockquote", "pre", "figure", "figcaption", "dl", "dt", "dd", "form", "hr"}


def html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page with headings as ``#`` lines, and its ``<title>``.

    Drops script, style, nav (and other non-content tags); block elements become paragraphs.
    """
    try:
        from bs4 import BeautifulSoup, NavigableString
    except ImportError:
        raise _missing("beautifulsoup4", "beautifulsoup4") from None
    soup = BeautifulSoup(html, "html.parser")  # stdlib parser: no lxml needed
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for s in soup.find_all(string=True):  # source newlines inside a paragraph are not line breaks
        if not s.find_parent("pre") and type(s) is NavigableString:
            s.replace_with(re.sub(r"\s+", " ", str(s)))
    for h in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        h.replace_with(f"\n\n{'#' * int(h.name[1])} {h.get_text(' ', strip=True)}\n\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    return _clean_lines(soup.get_text()), title or None


def load_html(path: str | Path) -> list[Document]:
    """An HTML page as one document (markdown-style headings); title from ``<title>``, else the first ``#``."""
    data, meta = _read(path, "html")
    raw, meta["encoding"] = decode_text(data)
    text, title = html_to_text(raw)
    meta["title"] = title or markdown_title(text) or meta["title"]
    return [Document(text, meta)]


# --- pdf and docx -----------------------------------------------------------------------------

def load_pdf(path: str | Path) -> list[Document]:
    """One document per PDF page with text (``page`` is 1-based; pages without text are skipped)."""
    try:
        from pypdf import PdfReader
    except ImportError:
        raise _missing("pypdf", "pypdf") from None
    data, meta = _read(path, "pdf")
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except Exception as e:  # pypdf raises many types (PdfReadError, KeyError, ValueError…) on bad files
        raise _corrupt(path, "PDF", e) from None
    if info_title.strip().lower() not in ("", "untitled"):  # generators (reportlab…) stamp "untitled"
        meta["title"] = info_title.strip()
    meta["pages"] = len(pages)
    return [Document(text.strip(), {**meta, "page": i}) for i, text in enumerate(pages, 1) if text.strip()]


def _docx_heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 1
    m = re.fullmatch(r"Heading (\d)", style_name)
    return int(m.group(1)) if m else None


def load_docx(path: str | Path) -> list[Document]:
    """A Word document as one document: headings as ``#`` lines by level, tables as ``a | b`` rows.

    The title comes from the core properties, else the first heading, else the file name.
    """
    try:
        import docx
        from docx.table import Table
    except ImportError:
        raise _missing("python-docx", "python-docx") from None
    data, meta = _read(path, "docx")
    try:
        d = docx.Document(io.BytesIO(data))
        blocks, first_heading = [], None
        for item in d.iter_inner_content():  # paragraphs and tables in document order
            if isinstance(item, Table):
                rows = [" | ".join(c.text.strip() for c in row.cells) for row in item.rows]
                blocks.append("\n".join(rows))
                continue
            text = item.text.strip()
            if not text:
                continue
            level = _docx_heading_level(item.style.name if item.style is not None else "")
            if level:
                first_heading = first_heading or text
                text = f"{'#' * level} {text}"
            elif (item.style is not None and item.style.name.startswith("List")):
                text = f"- {text}"
            blocks.append(text)
        core_title = (d.core_properties.title or "").strip()
    except Exception as e:  # a zip that is not a docx, a broken part…
        raise _corrupt(path, "DOCX", e) from None
    meta["title"] = core_title or first_heading or meta["title"]
    return [Document("\n\n".join(blocks), meta)]


# --- json, jsonl, csv -------------------------------------------------------------------------

def get_path(obj: Any, dotted: str) -> Any:
    """``get_path({"a": {"b": [{"c": 1}]}}, "a.b.0.c") == 1``; raises KeyError naming the missing step."""
    for step in dotted.split("."):
        if isinstance(obj, list) and step.lstrip("-").isdigit() and -len(obj) <= int(step) < len(obj):
            obj = obj[int(step)]
        elif isinstance(obj, dict) and step in obj:
            obj = obj[step]
        else:
            raise KeyError(step)
    return obj


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _record(value: Any, text_key: str | None, meta: dict[str, Any], where: str) -> Document:
    """A JSON value as a document; with ``text_key`` the other top-level fields go to metadata.

    A field whose name clashes with the file metadata (``source``, ``mtime``…) is kept as
    ``record_<name>`` so neither side is lost; ``title`` is the exception, a record's title wins.
    """
    if text_key is None:
        return Document(_as_text(value), meta)
    try:
        text = get_path(value, text_key)
    except KeyError as e:
        keys = f"; its keys: {', '.join(map(str, value))}" if isinstance(value, dict) else ""
        raise ConfigError(f"{where}: text_key {text_key!r} not found (no {e.args[0]!r}){keys}") from None
    meta = dict(meta)
    if isinstance(value, dict):
        head = text_key.split(".")[0]
        for k, v in value.items():
            if k != head:
                meta[f"record_{k}" if k in meta and k != "title" else k] = v
    return Document(_as_text(text), meta)


def load_json(path: str | Path, text_key: str | None = None) -> list[Document]:
    """A JSON file: a top-level list gives one document per element (``index`` in metadata).

    Args:
        text_key: a dotted path to the text inside each record (``"body"``, ``"data.content"``,
            ``"messages.0.text"``); None: the whole value (or each element), pretty-printed.
    """
    data, meta = _read(path, "json")
    try:
        value = json.loads(decode_text(data)[0])
    except json.JSONDecodeError as e:
        raise ConfigError(f"cannot read {str(path)!r} as JSON: {e}") from None
    if isinstance(value, list):
        return [_record(v, text_key, {**meta, "index": i}, f"{path} [{i}]") for i, v in enumerate(value)]
    return [_record(value, text_key, meta, str(path))]


def load_jsonl(path: str | Path, text_key: str = "text") -> list[Document]:
    """A JSON Lines file, one document per non-blank line (``line`` is 1-based); other keys go to metadata."""
    data, meta = _read(path, "jsonl")
    docs = []
    for n, line in enumerate(decode_text(data)[0].splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"cannot read {str(path)!r} line {n} as JSON: {e}") from None
        docs.append(_record(value, text_key, {**meta, "line": n}, f"{path} line {n}"))
    return docs


def load_csv(path: str | Path, delimiter: str = ",") -> list[Document]:
    """One document per CSV row, text as ``column: value`` lines (empty cells left out).

    ``sheet`` is the file stem (the same key a spreadsheet loader would fill) and ``row`` the
    1-based data row, header not counted.
    """
    data, meta = _read(path, "csv")
    reader = csv.reader(io.StringIO(decode_text(data)[0], newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{str(path)!r} has no header row; a CSV needs column names on its first line")
        header = [h.strip() or f"column_{i + 1}" for i, h in enumerate(header)]
        docs = []
        for n, row in enumerate(reader, 1):
            lines = [f"{col}: {val.strip()}" for col, val in zip(header, row) if val.strip()]
            if lines:
                docs.append(Document("\n".join(lines), {**meta, "sheet": meta["title"], "row": n}))
    except csv.Error as e:
        raise _corrupt(path, "CSV", e) from None
    return docs


# --- dispatch and folders ---------------------------------------------------------------------

LOADERS: dict[str, Callable[..., list[Document]]] = {
    ".txt": load_text, ".text": load_text, ".md": load_markdown, ".markdown": load_markdown,
    ".html": load_html, ".htm": load_html, ".pdf": load_pdf, ".docx": load_docx,
    ".json": load_json, ".jsonl": load_jsonl, ".csv": load_csv,
}


def load(path: str | Path, **options: Any) -> list[Document]:
    """Load one file with the loader for its suffix.

    Args:
        path: the file.
        **options: passed to the loader (``text_key`` for JSON/JSONL, ``delimiter`` for CSV).

    Example:
        >>> load("faq.jsonl", text_key="answer")[0].metadata["line"]
        1
    """
    suffix = Path(path).suffix.lower()
    if suffix not in LOADERS:
        raise ConfigError(f"no loader for {str(path)!r} (suffix {suffix or 'none'!r}); "
                          f"supported: {', '.join(sorted(LOADERS))}")
    unknown = sorted(set(options) - _options(LOADERS[suffix]))
    if unknown:
        raise ConfigError(f"the {suffix} loader takes no option {unknown[0]!r}; "
                          f"it takes: {', '.join(sorted(_options(LOADERS[suffix]))) or 'none'}")
    return LOADERS[suffix](path, **options)


def _options(loader: Callable[..., list[Document]]) -> set[str]:
    """The keyword options a loader takes (everything after ``path``)."""
    return set(list(inspect.signature(loader).parameters)[1:])


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def iter_files(root_or_glob: str | Path, glob: str = "**/*",
               exclude: Iterable[str] | str | None = None) -> Iterator[Path]:
    """Files under a folder (matching ``glob``), a single file, or a glob pattern, sorted.

    Hidden files and folders (names starting with ``.``) under a folder or a pattern are skipped.
    ``exclude`` patterns are fnmatch-style on the path relative to the folder (``*`` crosses
    ``/``, so ``"*.log"`` drops logs at any depth).

    Example:
        >>> [p.name for p in iter_files("docs/*.md")]
        ['a.md', 'b.md']
    """
    excludes = [exclude] if isinstance(exclude, str) else list(exclude or [])
    p = Path(root_or_glob)
    if p.is_file():
        yield p
        return
    if p.is_dir():
        base, found = p, (q for q in p.glob(glob))
    elif globlib.has_magic(str(root_or_glob)):
        first_magic = next(i for i, part in enumerate(p.parts) if globlib.has_magic(part))
        base = Path(*p.parts[:first_magic])  # Path() is "."
        found = (Path(s) for s in globlib.glob(str(root_or_glob), recursive=True))
    else:
        raise ConfigError(f"{str(root_or_glob)!r} is not a file, a folder or a glob pattern that matches")
    for q in sorted(found):
        rel = q.relative_to(base)  # hidden and exclude are judged below the fixed part of the path
        if q.is_file() and not _hidden(rel) and not any(fnmatch.fnmatch(rel.as_posix(), x) for x in excludes):
            yield q


def load_folder(root: str | Path, glob: str = "**/*", exclude: Iterable[str] | str | None = None,
                **options: Any) -> Iterator[Document]:
    """Documents from every supported file under ``root`` (or a file, or a glob pattern), in path order.

    Files with a suffix no loader knows are skipped; a corrupt supported file raises ConfigError
    naming it. ``options`` go to every loader that accepts them.

    Example:
        >>> docs = list(load_folder("handbook", glob="**/*.md", exclude="archive/*"))
    """
    for path in iter_files(root, glob=glob, exclude=exclude):
        loader = LOADERS.get(path.suffix.lower())
        if loader is None:
            continue
        accepted = _options(loader)
        yield from loader(path, **{k: v for k, v in options.items() if k in accepted})
