"""Loaders on real files written here: each format, folders and globs, metadata, bad input."""
import hashlib
import json
import os
import sys

import pytest

from llmkit import ConfigError
from llmkit.rag.loaders import LOADERS, Document, decode_text, get_path, iter_files, load, load_folder


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def make_pdf(path, pages, title=None):
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    if title:
        c.setTitle(title)
    for text in pages:
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    return path


# --- text -------------------------------------------------------------------------------------

def test_text_utf8_and_metadata(tmp_path):
    p = write(tmp_path / "notes.txt", "Crème brûlée — ünïcode\nsecond line\n".encode())
    [doc] = load(p)
    assert isinstance(doc, Document)
    assert doc.text == "Crème brûlée — ünïcode\nsecond line\n"
    m = doc.metadata
    assert m["source"] == str(p.resolve()) and m["title"] == "notes" and m["format"] == "text"
    assert m["encoding"] == "utf-8"
    assert m["content_hash"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert m["mtime"] == pytest.approx(p.stat().st_mtime)


def test_text_latin1_fallback_and_bom(tmp_path):
    [doc] = load(write(tmp_path / "old.txt", "café déjà vu".encode("latin-1")))
    assert doc.text == "café déjà vu" and doc.metadata["encoding"] == "latin-1"
    [doc] = load(write(tmp_path / "bom.txt", b"\xef\xbb\xbfhello"))
    assert doc.text == "hello" and doc.metadata["encoding"] == "utf-8"  # the BOM is not part of the text
    [doc] = load(write(tmp_path / "wide.txt", "\ufeffhé".encode("utf-16-le")))
    assert doc.text == "hé" and doc.metadata["encoding"] == "utf-16-le"
    assert decode_text("x".encode("utf-32"))[0] == "x"


def test_content_hash_changes_with_the_file(tmp_path):
    p = write(tmp_path / "a.txt", "version one")
    before = load(p)[0].metadata
    os.utime(p, (1_000_000, 1_000_000))
    write(p, "version two")
    after = load(p)[0].metadata
    assert before["content_hash"] != after["content_hash"]
    assert after["content_hash"] == hashlib.sha256(b"version two").hexdigest()
    assert isinstance(after["mtime"], float) and after["mtime"] > 1_000_000


# --- markdown and html ------------------------------------------------------------------------

def test_markdown_keeps_headings_and_takes_title(tmp_path):
    md = "```\n# not a title, inside a fence\n```\n\nIntro.\n\n# Getting Started\n\n## Install\n\npip install x\n"
    [doc] = load(write(tmp_path / "guide.md", md))
    assert doc.text == md  # unchanged: the header-aware splitter needs the # lines
    assert doc.metadata["title"] == "Getting Started" and doc.metadata["format"] == "markdown"
    [doc] = load(write(tmp_path / "plain.md", "## only level two\n\ntext"))
    assert doc.metadata["title"] == "plain"


HTML = """<!doctype html><html><head><title>The Page Title</title>
<style>body { color: red }</style><script>var secret = "SCRIPT_TEXT";</script></head>
<body><nav><a href="/">NAV_LINK Home</a></nav>
<h1>Main   Heading</h1>
<p>First paragraph
   spans lines.</p>
<h2>Sub <em>Section</em></h2>
<ul><li>one</li><li>two</li></ul>
<script>console.log("MORE_SCRIPT")</script>
</body></html>"""


def test_html_drops_script_style_nav_and_keeps_headings(tmp_path):
    [doc] = load(write(tmp_path / "page.html", HTML))
    for gone in ("SCRIPT_TEXT", "MORE_SCRIPT", "color: red", "NAV_LINK"):
        assert gone not in doc.text
    assert doc.text.splitlines()[0] == "# Main Heading"
    assert "## Sub Section" in doc.text.splitlines()
    assert "First paragraph spans lines." in doc.text.splitlines()
    assert {"one", "two"} <= set(doc.text.splitlines())
    assert doc.metadata["title"] == "The Page Title" and doc.metadata["format"] == "html"
    [doc] = load(write(tmp_path / "bare.htm", "<h1>Only H1</h1><p>x</p>"))
    assert doc.metadata["title"] == "Only H1"


# --- pdf and docx -----------------------------------------------------------------------------

def test_pdf_one_document_per_page(tmp_path):
    p = make_pdf(tmp_path / "report.pdf", ["Alpha page about llamas", "Beta page about alpacas"])
    docs = load(p)
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert "Alpha page about llamas" in docs[0].text and "alpacas" not in docs[0].text
    assert "Beta page about alpacas" in docs[1].text
    assert all(d.metadata["format"] == "pdf" and d.metadata["pages"] == 2 for d in docs)
    assert docs[0].metadata["content_hash"] == docs[1].metadata["content_hash"]
    assert docs[0].metadata["title"] == "report"
    titled = load(make_pdf(tmp_path / "t.pdf", ["x"], title="Annual Report"))
    assert titled[0].metadata["title"] == "Annual Report"


def test_corrupt_pdf_names_the_file(tmp_path):
    p = write(tmp_path / "broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n")
    with pytest.raises(ConfigError, match="broken.pdf"):
        load(p)


def test_missing_library_says_which_extra(tmp_path, monkeypatch):
    p = make_pdf(tmp_path / "r.pdf", ["x"])
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` fail
    with pytest.raises(ConfigError, match=r"pypdf.*llmkit\[rag\]"):
        load(p)


def test_docx_headings_tables_and_title(tmp_path):
    import docx

    d = docx.Document()
    d.add_heading("Employee Handbook", level=1)
    d.add_paragraph("Welcome aboard.")
    d.add_heading("Leave Policy", level=2)
    d.add_paragraph("Twenty days per year.")
    t = d.add_table(rows=2, cols=2)
    for r, cells in enumerate([("Type", "Days"), ("Sick", "10")]):
        for c, v in enumerate(cells):
            t.cell(r, c).text = v
    d.add_paragraph("After the table.")
    d.save(tmp_path / "handbook.docx")
    [doc] = load(tmp_path / "handbook.docx")
    assert doc.text.split("\n\n") == ["# Employee Handbook", "Welcome aboard.", "## Leave Policy",
                                      "Twenty days per year.", "Type | Days\nSick | 10", "After the table."]
    assert doc.metadata["title"] == "Employee Handbook" and doc.metadata["format"] == "docx"
    d.core_properties.title = "Official Title"
    d.save(tmp_path / "handbook.docx")
    assert load(tmp_path / "handbook.docx")[0].metadata["title"] == "Official Title"


def test_corrupt_docx_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="fake.docx"):
        load(write(tmp_path / "fake.docx", b"PK not a zip"))


# --- json, jsonl, csv -------------------------------------------------------------------------

RECORDS = [{"title": "Cats", "body": {"text": "Cats purr."}, "lang": "en", "source": "wiki"},
           {"title": "Dogs", "body": {"text": "Dogs bark."}, "lang": "en"}]


def test_json_list_whole_and_text_key(tmp_path):
    p = write(tmp_path / "animals.json", json.dumps(RECORDS))
    docs = load(p)  # no text_key: each element pretty-printed
    assert len(docs) == 2 and [d.metadata["index"] for d in docs] == [0, 1]
    assert json.loads(docs[0].text) == RECORDS[0]
    docs = load(p, text_key="body.text")
    assert [d.text for d in docs] == ["Cats purr.", "Dogs bark."]
    m = docs[0].metadata
    assert m["title"] == "Cats" and m["lang"] == "en" and "body" not in m
    assert m["source"] == str(p.resolve()) and m["record_source"] == "wiki"  # a clash keeps both
    with pytest.raises(ConfigError, match=r"\[0\]: text_key 'nope' not found.*keys: title, body"):
        load(p, text_key="nope")


def test_json_object_and_dotted_path(tmp_path):
    obj = {"data": {"items": [{"content": "first"}, {"content": "second"}]}}
    p = write(tmp_path / "one.json", json.dumps(obj))
    [doc] = load(p)
    assert json.loads(doc.text) == obj and "index" not in doc.metadata
    assert load(p, text_key="data.items.1.content")[0].text == "second"
    assert get_path(obj, "data.items.-1.content") == "second"
    with pytest.raises(ConfigError, match="bad.json"):
        load(write(tmp_path / "bad.json", "{not json"))


def test_jsonl_one_document_per_line(tmp_path):
    lines = ['{"text": "hello", "id": 7}', "", '{"text": "world", "id": 8, "tags": ["a"]}']
    p = write(tmp_path / "rows.jsonl", "\n".join(lines) + "\n")
    docs = load(p)
    assert [d.text for d in docs] == ["hello", "world"]
    assert [d.metadata["line"] for d in docs] == [1, 3]
    assert docs[1].metadata["id"] == 8 and docs[1].metadata["tags"] == ["a"] and "text" not in docs[1].metadata
    assert load(p, text_key="id")[0].text == "7"
    with pytest.raises(ConfigError, match=r"line 2.*text"):
        load(write(tmp_path / "miss.jsonl", '{"text": "ok"}\n{"body": "no text"}\n'))
    with pytest.raises(ConfigError, match=r"broken.jsonl.*line 1"):
        load(write(tmp_path / "broken.jsonl", "{oops\n"))


def test_csv_one_document_per_row(tmp_path):
    p = write(tmp_path / "people.csv", 'name,city,note\nAda,London,"likes, commas"\nAlan,,\n')
    docs = load(p)
    assert [d.text for d in docs] == ["name: Ada\ncity: London\nnote: likes, commas", "name: Alan"]
    assert [(d.metadata["sheet"], d.metadata["row"]) for d in docs] == [("people", 1), ("people", 2)]
    semi = write(tmp_path / "semi.csv", "a;b\n1;2\n")
    assert load(semi, delimiter=";")[0].text == "a: 1\nb: 2"
    with pytest.raises(ConfigError, match="empty.csv"):
        load(write(tmp_path / "empty.csv", ""))


# --- dispatch, folders, globs -----------------------------------------------------------------

def test_load_rejects_unknown_suffix_and_option(tmp_path):
    with pytest.raises(ConfigError, match=r"image.png.*\.md"):
        load(write(tmp_path / "image.png", b"\x89PNG"))
    with pytest.raises(ConfigError, match=r"\.txt loader takes no option .text_key."):
        load(write(tmp_path / "a.txt", "x"), text_key="y")
    with pytest.raises(ConfigError, match="missing.txt"):
        load(tmp_path / "missing.txt")
    assert {".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".json", ".jsonl", ".csv"} <= set(LOADERS)


def make_tree(root):
    write(root / "b.txt", "bee")
    write(root / "a.md", "# A\n\nay")
    write(root / "sub" / "c.txt", "see")
    write(root / "sub" / "deep" / "d.jsonl", '{"text": "dee"}\n')
    write(root / "logo.png", b"\x89PNG")  # unsupported: skipped
    write(root / ".hidden.txt", "secret")
    write(root / ".git" / "config.txt", "secret too")
    write(root / "drafts" / "e.txt", "draft")
    return root


def test_load_folder_sorted_skips_unsupported_and_hidden(tmp_path):
    root = make_tree(tmp_path / "kb")
    docs = list(load_folder(root))
    assert [d.text for d in docs] == ["# A\n\nay", "bee", "draft", "see", "dee"]
    assert all("secret" not in d.text for d in docs)
    docs = list(load_folder(root, glob="**/*.txt", exclude=["drafts/*"]))
    assert [os.path.basename(d.metadata["source"]) for d in docs] == ["b.txt", "c.txt"]
    assert [d.text for d in load_folder(root, glob="*.txt")] == ["bee"]  # not recursive
    assert [d.text for d in load_folder(root, exclude="*.txt")] == ["# A\n\nay", "dee"]  # * crosses folders


def test_load_folder_passes_options_to_loaders_that_take_them(tmp_path):
    root = tmp_path / "mixed"
    write(root / "x.jsonl", '{"body": "from jsonl"}\n')
    write(root / "y.txt", "from txt")
    assert [d.text for d in load_folder(root, text_key="body")] == ["from jsonl", "from txt"]


def test_iter_files_folder_file_and_glob(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "kb")
    assert iter_files(root / "b.txt").__next__() == root / "b.txt"
    assert [p.name for p in iter_files(str(root / "**" / "*.txt"))] == ["b.txt", "e.txt", "c.txt"]
    monkeypatch.chdir(root)
    assert [str(p) for p in iter_files("sub/*.txt")] == ["sub/c.txt"]
    assert [p.name for p in iter_files("*.md")] == ["a.md"]
    with pytest.raises(ConfigError, match="nowhere"):
        list(iter_files(tmp_path / "nowhere"))
