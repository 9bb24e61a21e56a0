"""The README's field table is the schema's, and its two commands are what CI runs."""

from pathlib import Path

from tlsinspect.report.schema import FIELDS, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_field_table_matches_schema():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- fields:start -->\n", 1)[1].split("\n<!-- fields:end -->", 1)[0]
    assert block == markdown_table()
    assert len(FIELDS) == len({name for name, _, _ in FIELDS})


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "\nscripts/test\n" in readme
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()
