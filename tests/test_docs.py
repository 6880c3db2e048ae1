"""What the docs and packaging promise matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import build_ast_schema, parse, validate

from gateway.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_has_a_row_in_the_readme_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(POLOS_GATEWAY_[A-Z_]+)` \| ([^|]+) \|", readme, re.MULTILINE))

    for name, field in Settings.model_fields.items():
        variable = f"POLOS_GATEWAY_{name.upper()}"
        assert variable in rows, f"README.md has no row for {variable}"
        default = field.default
        shown = (
            "unset"
            if default is None
            else ",".join(default)
            if isinstance(default, list)
            else str(default)
        )
        assert rows[variable].strip().strip("`") == shown, variable
    assert set(rows) == {f"POLOS_GATEWAY_{name.upper()}" for name in Settings.model_fields}


def test_the_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:20]

    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_every_setting_the_docs_name_exists() -> None:
    settings = {f"POLOS_GATEWAY_{name.upper()}" for name in Settings.model_fields}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named = set(re.findall(r"POLOS_GATEWAY_[A-Z_]*[A-Z]", doc.read_text()))
        assert named <= settings, f"{doc.name} names no such setting: {sorted(named - settings)}"


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def test_the_frontend_guide_shows_only_documents_the_js_check_runs() -> None:
    guide = (ROOT / "docs" / "frontend.md").read_text()
    check = _collapsed((ROOT / "tests" / "js" / "client-check.mjs").read_text())
    schema = build_ast_schema(parse((ROOT / "schema.graphql").read_text()))
    documents = re.findall(r"^```graphql\n(.*?)^```", guide, re.MULTILINE | re.DOTALL)

    assert len(documents) >= 6
    for document in documents:
        assert _collapsed(document) in check, f"not in the JS check:\n{document}"
        assert validate(schema, parse(document)) == [], document
