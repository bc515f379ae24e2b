"""The README and docs/ as a newcomer reads them: links that resolve, the cluster guide in order."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "data" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '# comment' in a code block is no heading
    return {anchor(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if "://" in target:
            continue
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_file(), f"{page.name}: link to {target}: no such file"
        if frag:
            assert frag in anchors(dest), f"{page.name}: link to {target}: no such heading"


def test_anchor_follows_github():
    assert anchor("1. Build the image (Containers)") == "1-build-the-image-containers"
    assert anchor("What each experiment shows") == "what-each-experiment-shows"


def test_readme_opens_with_two_commands_then_the_cluster_guide_in_order():
    text = (REPO / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections[:3] == ["Two commands on a fresh machine", "On a cluster", "What each experiment shows"]
    assert sections[-1] == "Configuration reference"
    first = text.split("\n## ", 2)[1]
    assert "make demo" in first and "make test" in first
    guide = text.split("\n## On a cluster\n", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^### \d\. (.+)$", guide, flags=re.M)
    order = ["image", "sif", "stage", "dry run", "submit", "status", "aggregate"]
    assert len(steps) == len(order) and all(word in step.lower() for word, step in zip(order, steps)), steps
