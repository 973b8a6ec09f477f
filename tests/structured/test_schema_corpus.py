"""The JSON Schema corpus in tests/data/schemas: every schema builds as a JSONSchema constraint
(jsonschema meta-validation and an llguidance grammar), its ``valid`` examples pass ``check`` and
its ``invalid`` examples raise ``Invalid``. No model is loaded; this runs in well under a second.

Each file is ``{"prompt": ..., "schema": ..., "valid": [...], "invalid": [...]}``; the corpus is
meant for grammar-constrained generation with a tiny model, so arrays are bounded and strings short.
Invalid examples never rely on the ``date-time`` format alone: jsonschema checks it only when
``rfc3339-validator`` is installed.
"""
import json
from pathlib import Path

import pytest

from llmkit.structured import Invalid, JSONSchema

CORPUS = Path(__file__).resolve().parent.parent / "data" / "schemas"
FILES = sorted(CORPUS.glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_schema_file(path):
    doc = _load(path)
    assert set(doc) == {"prompt", "schema", "valid", "invalid"}, f"{path.name}: unexpected keys {sorted(doc)}"
    assert isinstance(doc["prompt"], str) and doc["prompt"].strip()
    assert 1 <= len(doc["valid"]) <= 2 and 1 <= len(doc["invalid"]) <= 2

    c = JSONSchema(doc["schema"])  # raises ConstraintError on a bad schema or one llguidance rejects
    for value in doc["valid"]:
        assert c.check(json.dumps(value)) == value
    for value in doc["invalid"]:
        with pytest.raises(Invalid):
            c.check(json.dumps(value))


def _walk(node, keys: set, formats: set):
    if isinstance(node, dict):
        for k, v in node.items():
            keys.add(k)
            if k == "format" and isinstance(v, str):
                formats.add(v)
            if k in ("properties", "$defs") and isinstance(v, dict):  # names there are not keywords
                for sub in v.values():
                    _walk(sub, keys, formats)
            elif k not in ("const", "enum", "default", "examples"):  # values there are data, not schema
                _walk(v, keys, formats)
    elif isinstance(node, list):
        for v in node:
            _walk(v, keys, formats)


def test_corpus_coverage():
    assert len(FILES) >= 40, f"only {len(FILES)} schema files in {CORPUS}"
    names = [p.name for p in FILES]
    assert all(n[:2].isdigit() and n[2] == "_" for n in names), names
    keys: set = set()
    formats: set = set()
    for path in FILES:
        schema = _load(path)["schema"]
        _walk(schema, keys, formats)
    wanted = {"$ref", "$defs", "anyOf", "oneOf", "enum", "const", "minItems", "maxItems", "pattern",
              "additionalProperties", "minimum", "maximum"}
    assert wanted <= keys, f"no schema uses {sorted(wanted - keys)}"
    wanted_formats = {"date", "date-time", "email", "uuid"}
    assert wanted_formats <= formats, f"no schema uses the formats {sorted(wanted_formats - formats)}"
