"""The page's HTML as text: names that reach attributes are escaped (no browser needed)."""
import re

import pytest

from collapse_hpc.report import page
from collapse_hpc.plotting.plots import Fig


def test_anchors_and_ids_are_safe(tmp_path):
    hostile = 'x"><script>alert(1)</script>'
    fig = Fig('k" onmouseover="alert(2)', "T", "C", [tmp_path / "a.png", tmp_path / "a.pdf"])
    empty = ([], [])
    rep = page.Report("R", tmp_path, [("r", tmp_path)], [page.Section(hostile, [fig], empty, title="S",
                                                                    texts=[("t", "p", (["g"], [["0"]]))])],
                      empty, empty, empty, [])
    text = page.write_html(rep)
    assert "<script>alert" not in text and "onmouseover=" not in text
    ids = re.findall(r'\bid="([^"]*)"', text)
    hrefs = re.findall(r'href="#([^"]*)"', text)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", a) for a in ids + hrefs), (ids, hrefs)
    assert page.anchor(hostile) in ids and page.anchor(hostile) in hrefs  # the nav link still lands


def test_the_incomplete_banner_counts_in_the_singular_and_plural():
    from collapse_hpc.report.page import _incomplete_html

    assert "<p>1 chain not finished; " in _incomplete_html(["lm/replace-p0-s0: 1 of 2 generations"])
    assert "<p>2 chains not finished; " in _incomplete_html(["a", "b"])  # it read "1 chain(s)", "2 chain(s)"


def test_problems_past_fifty_are_said_with_how_many_more(tmp_path):
    """index.html and results.md showed 50 of a report's problems, with nothing saying there were more."""
    empty = ([], [])
    problems = [f"gmm/replace-p0-s{i}/part_000/metrics.parquet: sha256 mismatch" for i in range(60)]
    rep = page.Report("R", tmp_path, [("r", tmp_path)], [], empty, empty, empty, [], problems=problems)
    html_items = re.findall(r"<li>(.*?)</li>", page.write_html(rep).split("<h2>Problems</h2>")[1])
    md_items = re.findall(r"^- (.*)$", page.write_markdown(rep).split("## Problems")[1], re.M)
    for items in (html_items, md_items):
        assert items == [*problems[:50], "… and 10 more"], items


def test_results_md_shows_generated_text_as_written(tmp_path):
    """results.md put model and data text raw into Markdown: WikiText's `<unk>` rendered as an unknown
    HTML tag (nothing shown), `__init__` and `*args` as emphasis, and an `_` in a prompt ended its italics."""
    import html

    markdown_it = pytest.importorskip("markdown_it")
    prompt = "say <unk> = \"_Feature(\" & 1 * 2 _x_ `q` [a](b) ~~s~~ \\ &amp;"
    cells = ["def __init__(self, *args, **kw): <unk> | a\\|b", "plain"]
    empty = ([], [])
    rep = page.Report("R", tmp_path, [("r", tmp_path)], [page.Section("lm", [], empty, texts=[
        ("Real training block 0", prompt, (["generation", "replace"], [["0", c] for c in cells]))])],
                      empty, empty, empty, [])
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    rendered = md.render(page.write_markdown(rep))
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    assert f"Prompt: {prompt}" in shown
    assert "<em>" + html.escape(prompt) + "</em>" in rendered  # italic, as one span
    rows = re.findall(r"<tr>\s*<td>0</td>\s*<td>(.*?)</td>", rendered, re.S)
    assert [html.unescape(r) for r in rows] == cells  # each text one cell, no markup read into it
