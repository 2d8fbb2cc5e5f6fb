"""The key schema table of docs/architecture.md is generated, never edited by hand."""

from __future__ import annotations

from pathlib import Path

from courseredis import key_table


def test_the_architecture_page_shows_the_schema_as_declared(repo_root: Path) -> None:
    page = (repo_root / "docs" / "architecture.md").read_text()
    start, end = "<!-- keys:start -->\n", "\n<!-- keys:end -->"
    shown = page[page.index(start) + len(start) : page.index(end)]
    assert shown == key_table.markdown_table(), "run `python -m courseredis.key_table`, paste it"
