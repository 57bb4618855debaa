"""The manual: generated references match the code, everything has help text, and every link inside it resolves."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelreg.cli import docs
from modelreg.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def test_the_committed_references_are_what_the_code_generates():
    for path, text in docs.pages(ROOT).items():
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(ROOT)} is out of date: run `make docs`"


def test_every_command_option_and_setting_has_help_text():
    assert docs.missing_help(build_parser()) == []


def test_a_new_command_without_help_or_regeneration_is_caught():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    new = sub.add_parser("brand-new")
    new.add_argument("--flag")
    assert docs.missing_help(parser) == ["command `modelreg brand-new`", "`modelreg brand-new` argument --flag FLAG"]
    assert "## modelreg brand-new" in docs.cli_reference(parser)
    assert docs.cli_reference(parser) != (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")


def test_check_reports_a_stale_page(tmp_path):
    for path, text in docs.pages(tmp_path).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("list the merged models", "an old description"), encoding="utf-8")
    assert docs.main(["--root", str(tmp_path), "--check"]) == 1
    assert docs.main(["--root", str(tmp_path)]) == 0 and docs.main(["--root", str(tmp_path), "--check"]) == 0


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped but - and _, spaces become -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(FENCE.sub("", path.read_text(encoding="utf-8")))
            if not re.match(r"[a-z]+:", m.group(1))]


def test_slug_matches_github():
    assert slug("Discovery and the fit estimate") == "discovery-and-the-fit-estimate"
    assert slug("modelreg export llama-swap") == "modelreg-export-llama-swap"
    assert slug("`hosts` and `profile_name`") == "hosts-and-profile_name"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for link in links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
