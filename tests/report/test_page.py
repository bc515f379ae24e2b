"""index.html opens from disk in headless Chromium: every image loads, no console errors."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
INSTALL = Path(__file__).with_name("install_chromium.sh")


@pytest.fixture(scope="session")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        if os.geteuid() != 0:
            pytest.skip("chromium is not installed and installing it needs root (apt-get install -y chromium)")
        subprocess.run(["bash", str(INSTALL)], check=True, timeout=600)
    return CHROMIUM


# Injected by the test into a copy of the page (the report itself carries no script): records
# broken images, console errors and tables or captions wider than the page (pre blocks scroll on their
# own and are not checked) into the DOM, so a headless browser's --dump-dom shows them.
CHECK_SCRIPT = """<script>
(function () {
  var errors = [];
  function note(msg) {
    errors.push(String(msg)); document.documentElement.setAttribute('data-errors', errors.join(' | '));
  }
  var error = console.error;
  console.error = function () { note(Array.prototype.join.call(arguments, ' ')); error.apply(console, arguments); };
  window.addEventListener('error', function (e) {
    note(e.message || ('failed to load ' + (e.target && e.target.src)));
  }, true);
  window.addEventListener('load', function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
    var root = document.documentElement;
    root.setAttribute('data-images', imgs.length);
    root.setAttribute('data-broken', broken.map(function (i) { return i.getAttribute('src'); }).join(' '));
    root.setAttribute('data-errors', errors.join(' | '));
    var page = root.clientWidth;
    var wide = Array.prototype.slice.call(document.querySelectorAll('table, figcaption')).filter(function (el) {
      return !el.closest('pre') && (el.scrollWidth > page || el.getBoundingClientRect().right > page + 1);
    });
    root.setAttribute('data-wide', wide.map(function (el) {
      return el.tagName.toLowerCase() + ':' + el.scrollWidth + '>' + page;
    }).join(' ') + (root.scrollWidth > page ? ' page:' + root.scrollWidth + '>' + page : ''));
    root.setAttribute('data-ready', '1');
  });
})();
</script>"""


WINDOW = (1280, 2400)  # a laptop's width; tall enough for the screenshot to show the header and first figures


def _browse(chromium, index: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", *mode, index.absolute().as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def open_page(chromium, index: Path, tmp_path: Path) -> tuple[str, str]:
    """The page's DOM after load (with the attributes CHECK_SCRIPT sets) and Chromium's log; the
    page is opened as a copy beside it (its links are relative) with CHECK_SCRIPT in its head."""
    page = index.with_name(f".check-{index.name}")
    html = index.read_text()
    assert html.count("</head>") == 1
    page.write_text(html.replace("</head>", CHECK_SCRIPT + "</head>"))
    try:
        out = _browse(chromium, page, tmp_path, "--dump-dom")
    finally:
        page.unlink()
    return out.stdout, out.stderr


def screenshot(chromium, index: Path, tmp_path: Path) -> Path:
    path = tmp_path / "page.png"
    _browse(chromium, index, tmp_path, f"--screenshot={path}")
    return path


def attr(dom: str, name: str) -> str | None:
    m = re.search(rf'<html[^>]*\s{name}="([^"]*)"', dom)
    return m and m.group(1)


def test_index_opens_with_every_image_and_no_errors(full_report, chromium, tmp_path):
    dom, log = open_page(chromium, full_report / "index.html", tmp_path)
    assert attr(dom, "data-ready") == "1", "the page's load handler did not run"
    pngs = list((full_report / "figures").glob("*.png"))
    srcs = re.findall(r'<img src="([^"]+)"', dom)
    assert len(srcs) == len(pngs) > 10 and int(attr(dom, "data-images")) == len(srcs)
    assert all(not s.startswith(("/", "file:", "http")) for s in srcs), "links must be relative"
    assert attr(dom, "data-broken") == ""
    assert attr(dom, "data-errors") == ""
    assert attr(dom, "data-wide") == "", "a table or caption is wider than the page"
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert not console, console


def test_check_catches_a_broken_image(full_report, chromium, tmp_path):
    """The page's check can fail: a report with a figure removed shows it broken."""
    copy = tmp_path / "report"
    shutil.copytree(full_report, copy)
    (copy / "figures" / "gmm_l2.png").unlink()
    dom, _ = open_page(chromium, copy / "index.html", tmp_path)
    assert "figures/gmm_l2.png" in attr(dom, "data-broken")
    assert attr(dom, "data-errors")


def test_screenshot_of_the_page(full_report, chromium, tmp_path):
    """What a reader sees first: a screenshot of the page at a laptop's width (left in pytest's tmp_path for a
    look by hand), not blank."""
    from PIL import Image

    with Image.open(screenshot(chromium, full_report / "index.html", tmp_path)) as img:
        assert img.size == WINDOW
        grey = img.convert("L")
        assert len(grey.getcolors(maxcolors=256) or []) > 16  # text and figures, not an empty white page


def test_check_catches_a_table_or_caption_wider_than_the_page(full_report, chromium, tmp_path):
    """The width check can fail: a planted table of one unbreakable cell, and a caption, overflow the page;
    a long line in a pre block (it scrolls on its own) does not count."""
    copy = tmp_path / "report"
    shutil.copytree(full_report, copy)
    page = copy / "index.html"
    text = page.read_text()
    plant = ("<pre>" + "p" * 600 + "</pre><table><tr><td>" + "x" * 600 + "</td></tr></table>"
             "<figure><figcaption>" + "y" * 600 + "</figcaption></figure>")
    page.write_text(text.replace("</body>", plant + "</body>"))
    dom, _ = open_page(chromium, page, tmp_path)
    wide = attr(dom, "data-wide")
    assert "table:" in wide and "figcaption:" in wide and "pre" not in wide


def test_page_has_tables_config_and_compute(full_report):
    html = (full_report / "index.html").read_text()
    assert "<script" not in html  # the browser test brings its own check
    for text in ("Generation 0 against the last", "relative change", "core-hours", "GPU-hours", "Package versions",
                 "keep_fraction", "summary.csv", "metrics.parquet"):
        assert text in html, text
    mask = os.umask(0)
    os.umask(mask)
    assert (full_report / "index.html").stat().st_mode & 0o777 == 0o666 & ~mask  # shareable, not 0600
    md = (full_report / "results.md").read_text()
    assert "![Squared L2 distance to generation 0](figures/gmm_l2.png)" in md and "```yaml" in md


def test_section_titles_name_the_run_data_set(tmp_path):
    # the titles named WikiText-2 and MNIST whatever data the run used (wikivital, digits by default)
    from collapse_hpc.launch import records
    from collapse_hpc.report import aggregate
    from collapse_hpc.store import RunStore
    from tests.report import synthetic

    root = tmp_path / "r"
    synthetic.write_config(root, {"lm": {"generations": 2, "seeds": [0, 1], "dataset": "wikivital"},
                                  "vae": {"generations": 2, "dataset": "digits"}}, generations=2,
                           regimes=[{"name": "replace", "keep_fraction": 0.0},
                                    {"name": "replace", "keep_fraction": 0.1}])
    synthetic.lm(root, generations=2, small=True)
    # a launch of both that has not reached vae yet: the run's (a section), not left out with --only (none)
    records.save(RunStore(root), {"units": {}, records.EXPERIMENTS: ["lm", "vae"]})
    md = (aggregate.build([str(root)]).parent / "results.md").read_text()
    assert "## Language model: tiny OPT (2 layers, 128 wide) on wikivital" in md and "WikiText-2" not in md
    assert "## Variational autoencoder (digits)" in md and "MNIST" not in md


def test_page_shows_continuations_of_the_same_prompts_escaped(full_report):
    """The paper's example of text outputs: the same real prompt, each generation's continuation."""
    html = (full_report / "index.html").read_text()
    assert "Generated text" in html and "Real training block 0" in html
    assert "&lt;b&gt;Prompt&lt;/b&gt; 0 &amp; co" in html and "<b>Prompt</b>" not in html  # escaped
    for g in range(4):
        assert f"text of gen {g} for 0 in replace-p0-s0 &lt;i&gt;" in html
    assert "text of gen 0 for 0 in replace-p0.1-s0" in html  # a column per series
    assert "in replace-p0-s1" not in html  # one seed per series
    md = (full_report / "results.md").read_text()
    assert "#### Real training block 0" in md and "text of gen 3 for 0 in replace-p0-s0" in md


def test_continuations_come_from_the_seed_that_got_furthest(tmp_path):
    """Seed 0 stopped after generation 0, seed 1 reached generation 3: every generation's row has
    seed 1's text, none is blank."""
    from collapse_hpc.experiments.lm.figures import continuations
    from collapse_hpc.report import collect
    from tests.report import synthetic

    root = tmp_path / "lm"
    synthetic.write_config(root, {"lm": {"generations": 4, "seeds": [0, 1]}}, generations=4, seeds=(0, 1))
    synthetic.lm(root, done={"replace-p0-s0": 1, "replace-p0.1-s0": 1}, small=True)
    (title, _, (header, rows)), *_ = continuations([collect.load_run(root)])
    assert header == ["generation", "replace", "replace, keep 10%"]
    assert [row[0] for row in rows] == ["0", "1", "2", "3"]
    assert rows[3][1] == "text of gen 3 for 0 in replace-p0-s1 <i>" and "—" not in [c for r in rows for c in r]


def test_generated_text_is_one_cell_with_what_does_not_print_escaped(tmp_path):
    """A byte-level BPE can generate ESC or NUL: the text went raw into results.md (`cat` of it drove the
    terminal) and the page. White space runs are one space (the layout's); the rest as errors.one_line
    writes it."""
    from collapse_hpc.experiments.lm.figures import continuations
    from collapse_hpc.report import collect
    from tests.report import synthetic

    root = tmp_path / "lm"
    synthetic.write_config(root, {"lm": {"generations": 1, "seeds": [0]}}, generations=1, seeds=(0,))
    synthetic.lm(root, generations=1, seeds=(0,), small=True, continuation="red\x1b[31m  {i}\n\nnext\tline\x00 σ")
    (_, _, (_, rows)), *_ = continuations([collect.load_run(root)])
    assert rows[0][1:] == ["red\\x1b[31m 0 next line\\x00 σ"] * 2
