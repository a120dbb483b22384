"""Every relative link and embedded figure of the shipped Markdown (README.md, the recipes' READMEs
and RESULTS*.md) points at a file that exists: results files are renamed when a newer run replaces
them (e.g. RESULTS_label_budget.md -> RESULTS_label_budget_max100.md, with its figures), and a stale
path would show a broken plot on the model-zoo / GitHub page."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[2]
# ](target) of a Markdown link or image; targets with spaces are not used in our docs
LINK = re.compile(r"\]\(([^)\s]+)\)")


def shipped_markdown() -> List[Path]:
    files = [REPO / "README.md"]
    for recipe_md in sorted((REPO / "egs2").rglob("*.md")):
        rel = recipe_md.relative_to(REPO / "egs2").parts
        # run outputs (exp*/, dump*/, data*/, downloads/) are not shipped
        if any(part.startswith(("exp", "dump", "data", "downloads")) for part in rel[:-1]):
            continue
        files.append(recipe_md)
    return files


def relative_targets(md: Path) -> List[str]:
    targets = []
    for match in LINK.finditer(md.read_text(encoding="utf-8")):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # URLs, mailto:, in-page anchors
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def missing_targets(md: Path) -> List[str]:
    return [t for t in relative_targets(md) if not (md.parent / t).exists()]


def test_shipped_markdown_is_found():
    names = {p.relative_to(REPO).as_posix() for p in shipped_markdown()}
    assert "README.md" in names
    assert "egs2/mini_synth/asr1/README.md" in names
    assert "egs2/mini_synth/asr1/RESULTS_label_budget.md" in names


@pytest.mark.parametrize("md", shipped_markdown(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_exist(md: Path):
    missing = missing_targets(md)
    assert not missing, f"{md.relative_to(REPO)}: links to missing files: {missing}"


def test_link_check_catches_a_missing_figure(tmp_path: Path):
    md = tmp_path / "RESULTS_x.md"
    (tmp_path / "RESULTS_x_figures").mkdir()
    (tmp_path / "RESULTS_x_figures" / "a.png").write_bytes(b"png")
    md.write_text("![a](RESULTS_x_figures/a.png) ![b](RESULTS_old_figures/b.png) "
                  "[web](https://example.org/x.md) [here](#evidence)\n", encoding="utf-8")
    targets = relative_targets(md)
    assert targets == ["RESULTS_x_figures/a.png", "RESULTS_old_figures/b.png"]
    assert missing_targets(md) == ["RESULTS_old_figures/b.png"]
