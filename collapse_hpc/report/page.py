"""index.html (static, relative links, opens from disk) and results.md from the same content."""
from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from collapse_hpc.plotting import style
from collapse_hpc.plotting.plots import Fig
from collapse_hpc.report.tables import Table, Text
from collapse_hpc.logs import count, first_listed


@dataclass
class Section:
    experiment: str
    figures: list[Fig]
    table: Table
    title: str = ""  # default: the experiment's own title
    metrics: str = ""  # what its metrics mean
    texts: list[Text] = field(default_factory=list)  # e.g. lm: each generation's continuation of the same prompts
    notes: list[str] = field(default_factory=list)  # why the comparison table lacks a run (nothing after generation 0)
    bookkeeping: Table = ([], [])  # the same comparison of how the units were set up (Metric.kind bookkeeping)
    absent: str = ""  # the runs of the report that left it out with --only (tables.absent_from)

    @property
    def heading(self) -> str:
        return self.title or self.experiment


@dataclass
class Report:
    title: str
    out: Path
    runs: list[tuple[str, Path]]  # label, folder
    sections: list[Section]
    completeness: Table
    compute: Table
    packages: Table
    configs: list[tuple[str, str]]  # label, config.yaml text
    problems: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # unfinished chains and why (tables.unfinished)
    phases: Table = ([], [])  # per-generation compute (tables.phases)
    subset: str = ""  # which replicates the report holds, where not all (aggregate --replicates)
    beyond: list[str] = field(default_factory=list)  # finished generations past the plan (tables.beyond_plan)
    left_out: list[str] = field(default_factory=list)  # experiments a run left out with --only (tables.left_out)
    columns: list[str] = field(default_factory=list)  # metrics columns missing or not shown (tables.column_notes)

    def rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.out)).as_posix()


# the page is style.PAGE_PX wide at most: figures are sized (vae_samples) for what it shows of them
CSS = (f"body{{font-family:Georgia,serif;max-width:{style.PAGE_PX}px;margin:2em auto;padding:0 1em;color:#111;"
       """line-height:1.45}
h1,h2,h3{font-family:Helvetica,Arial,sans-serif}h2{border-bottom:1px solid #999;padding-bottom:.2em;margin-top:2em}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333}table{border-collapse:collapse;font-size:.85em;margin:.8em 0}
td,th{border:1px solid #bbb;padding:.2em .5em;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.8em}.missing{color:#777;font-style:italic}
nav a{margin-right:1em}table.texts td{text-align:left;vertical-align:top;font-size:.95em}
table.texts td:first-child{text-align:right;white-space:nowrap}.prompt{font-style:italic}
.incomplete{border:2px solid #b35900;background:#fff4e5;padding:.6em 1em;margin:1em 0}
.incomplete h2{border:0;margin:0 0 .3em 0;font-size:1.2em}.wide{overflow-x:auto}""")


def _html_table(table: Table, css: str = "") -> str:
    header, rows = table
    if not rows:
        return '<p class="missing">nothing yet</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


INCOMPLETE = "Incomplete run"
COLUMNS = "Metrics files unlike their experiment's declared metrics:"
COMPARE = "Generation 0 against the last common generation"
COMPARE_INTRO = ("Each series' mean at generation 0 and at the last generation every series of the run reached; "
                 "collapse: which way it moves the metric (the experiment's declaration); relative change: only for a "
                 "metric bounded at 0 (a signed one's, such as a fitted mean or a log, is —).")
BOOKKEEPING = "Run bookkeeping"
BOOKKEEPING_INTRO = "How the units were set up (not what collapse did), at the same generations."
PROGRESS_INTRO = ("Problems: the files this report reads, checked against their units' manifests; collapse-hpc "
                  "verify RUN re-hashes every file (generated shards and model weights too).")
COMPUTE_INTRO = ("Summed from the manifests: seconds × the CPU cores allotted (core-hours) and × the GPUs (GPU-hours) "
                 "each unit held; a unit killed and resumed (a requeue) counts every attempt, a killed one's up to "
                 "its last write.")
PHASES_INTRO = ("Per generation: a unit's seconds, every attempt's (mean over the generation's units; an array "
                "experiment's unit runs every generation) × its CPU cores and × its GPUs, and the phases the "
                "experiment times (mean over series and seeds; of a resumed unit, the work it kept from earlier "
                "attempts counts too, as training up to the checkpoint it resumed from and the shards already "
                "sampled; work done again, as evaluation, is its last attempt's).")


LISTED = 50  # items of a long list the page shows


def _first(lines: list[str]) -> list[str]:
    """The first LISTED lines, and one saying how many more."""
    return first_listed(lines, LISTED, "… and {} more")


def _incomplete_html(lines: list[str]) -> str:
    items = "".join(f"<li>{html.escape(ln)}</li>" for ln in _first(lines))
    return (f'<div class="incomplete" id="incomplete"><h2>{INCOMPLETE}</h2><p>{count(len(lines), "chain")} '
            f"not finished; "
            f"the figures show gaps and the tables compare only what every chain reached:</p>"
            f"<ul>{items}</ul></div>")


TEXTS_INTRO = ("What the models wrote: the continuation each generation produced for the same prompt "
               "(beam search, as its training data), next to the prompt itself.")


def _md_table(table: Table) -> str:
    header, rows = table
    if not rows:
        return "_nothing yet_\n"
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# what Markdown reads as markup inside a line: emphasis, code spans, links, HTML tags and entities, GFM's ~
MD_MARKUP = re.compile(r"([\\`*_\[\]<>&~])")


def md_text(text: str) -> str:
    """Model or data text shown as written in results.md: WikiText's `<unk>` read as an HTML tag (shown as
    nothing), `__init__` or `*args` as emphasis, and an `_` of a prompt ended its italics."""
    return MD_MARKUP.sub(r"\\\1", text)


def anchor(name: str) -> str:
    """An id and #fragment made of safe characters only: names come from experiments (a plugin's
    too) and must not end the attribute or open a tag."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))


def _fig_html(rep: Report, fig: Fig) -> str:
    title = html.escape(fig.title)
    if not fig.files:
        return f'<h3>{title}</h3><p class="missing">{html.escape(fig.caption)}</p>'
    png, pdf = (rep.rel(p) for p in fig.files)
    return (f'<figure id="{anchor(fig.key)}"><h3>{title}</h3><a href="{html.escape(pdf)}">'
            f'<img src="{html.escape(png)}" alt="{title}" loading="eager"></a>'
            f'<figcaption>{html.escape(fig.caption)} (<a href="{html.escape(pdf)}">PDF</a>)</figcaption></figure>')


def _where(rep: Report, root: Path, link, text=str) -> str:
    """Where a run's folder is, in words and no machine path: the one this report is in, else the folder by its
    name and its path from the page. link(path from the page, words) links the words to it; text() quotes."""
    rel = rep.rel(root)
    if rel == "..":
        return link(rel, "the run folder this report is in")
    return f"folder {link(rel, Path(root).name)}, at {text(rel)} from this page"


def _runs(rep: Report) -> str:
    """The runs by label, with where their folders are (_where), as Markdown links."""
    return ", ".join(f"{label} ({_where(rep, root, _md_link)})" for label, root in rep.runs)


def _md_link(rel: str, words: str) -> str:
    # a target in <…> may hold spaces and brackets (CommonMark); '<', '>' and a newline it may not
    target = rel.replace("<", "%3C").replace(">", "%3E").replace("\n", "%0A")
    words = words.replace("[", "\\[").replace("]", "\\]")
    return f"[{words}](<{target}>)" if re.search(r"[\s()<>]", rel) else f"[{words}]({rel})"


def _html_link(rel: str, words: str) -> str:
    return f'<a href="{html.escape(rel)}">{html.escape(words)}</a>'


def write_html(rep: Report) -> str:
    e = html.escape
    runs = ", ".join(f"<code>{e(label)}</code> ({_where(rep, root, _html_link, e)})" for label, root in rep.runs)
    nav = "".join(f'<a href="#{anchor(s.experiment)}">{e(s.heading)}</a>' for s in rep.sections)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(rep.title)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{e(rep.title)}</h1><p>Runs: {runs}.</p>" + "".join(f"<p>{e(ln)}</p>" for ln in rep.left_out),
             '<p>Data: <a href="metrics.parquet">metrics.parquet</a> (long form), '
             '<a href="summary.csv">summary.csv</a> (mean and 95% CI per generation), '
             '<a href="results.md">results.md</a>.</p>' + (f"<p>{e(rep.subset)}</p>" if rep.subset else ""),
             f"<nav>{nav}<a href=\"#compute\">Compute</a><a href=\"#config\">Config</a></nav>"]
    if rep.incomplete:
        parts.insert(3, _incomplete_html(rep.incomplete))
    if rep.problems or rep.columns:
        items = "".join(f"<li>{e(p)}</li>" for p in _first(rep.problems))
        notes = "".join(f"<li>{e(n)}</li>" for n in rep.columns)
        parts.append("<h2>Problems</h2>" + (f"<p>Units left out of the report:</p><ul>{items}</ul>" if items else "")
                     + (f"<p>{COLUMNS}</p><ul>{notes}</ul>" if notes else ""))
    for s in rep.sections:
        parts.append(f'<h2 id="{anchor(s.experiment)}">{e(s.heading)}</h2>')
        if s.absent:
            parts.append(f'<p class="missing">{e(s.absent)}</p>')
        if s.metrics:
            parts.append(f"<p>Metrics: {e(s.metrics)}</p>")
        parts += [_fig_html(rep, f) for f in s.figures]
        if s.texts:
            parts.append(f'<h3 id="{anchor(s.experiment)}-texts">Generated text</h3><p>{e(TEXTS_INTRO)}</p>')
        for title, prompt, table in s.texts:
            parts.append(f'<h4>{e(title)}</h4><p>Prompt: <span class="prompt">{e(prompt)}</span></p>'
                         + _html_table(table, "texts"))
        parts.append(f"<h3>{COMPARE}</h3><p>{e(COMPARE_INTRO)}</p>"
                     + "".join(f'<p class="missing">{e(n)}</p>' for n in s.notes)
                     + (_html_table(s.table) if s.table[1] or not s.notes else ""))
        if s.bookkeeping[1]:
            parts.append(f"<h3>{BOOKKEEPING}</h3><p>{e(BOOKKEEPING_INTRO)}</p>" + _html_table(s.bookkeeping))
    parts.append(f"<h2 id=\"progress\">Progress</h2><p>{e(PROGRESS_INTRO)}</p>" + _html_table(rep.completeness)
                 + "".join(f'<p class="missing">{e(n)}</p>' for n in rep.beyond))
    parts.append(f"<h2 id=\"compute\">Compute</h2><p>{e(COMPUTE_INTRO)}</p>" + _html_table(rep.compute))
    if rep.phases[1]:
        parts.append(f"<h3>Per generation</h3><p>{e(PHASES_INTRO)}</p>" + _html_table(rep.phases))
    parts.append("<h2 id=\"packages\">Package versions</h2>" + _html_table(rep.packages))
    parts.append("<h2 id=\"config\">Config</h2>")
    parts += [f"<h3>{e(label)}</h3><pre>{e(text)}</pre>" for label, text in rep.configs]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_markdown(rep: Report) -> str:
    out = [f"# {rep.title}\n", f"Runs: {_runs(rep)}.\n" + "".join(f"\n{ln}\n" for ln in rep.left_out),
           "Data: [metrics.parquet](metrics.parquet) (long form), [summary.csv](summary.csv) "
           "(mean and 95% CI per generation), [index.html](index.html).\n"]
    out += [rep.subset + "\n"] if rep.subset else []
    if rep.incomplete:
        out.insert(2, f"## {INCOMPLETE}\n\n" + "\n".join(f"- {ln}" for ln in rep.incomplete) + "\n")
    if rep.problems or rep.columns:
        out.append("## Problems\n\n" + "".join(f"- {p}\n" for p in _first(rep.problems))
                   + ("\n" if rep.problems and rep.columns else "")
                   + (f"{COLUMNS}\n\n" + "".join(f"- {n}\n" for n in rep.columns) if rep.columns else ""))
    for s in rep.sections:
        out.append(f"## {s.heading}\n")
        if s.absent:
            out.append(f"_{s.absent}_\n")
        if s.metrics:
            out.append(f"Metrics: {s.metrics}\n")
        for f in s.figures:
            if f.files:
                png, pdf = (rep.rel(p) for p in f.files)
                out.append(f"### {f.title}\n\n![{f.title}]({png})\n\n{f.caption} ([PDF]({pdf}))\n")
            else:
                out.append(f"### {f.title}\n\n_{f.caption}_\n")
        if s.texts:
            out.append(f"### Generated text\n\n{TEXTS_INTRO}\n")
        for title, prompt, (header, rows) in s.texts:
            out.append(f"#### {title}\n\nPrompt: _{md_text(prompt)}_\n\n"
                       + _md_table((header, [[md_text(c) for c in row] for row in rows])))
        out.append(f"### {COMPARE}\n\n{COMPARE_INTRO}\n\n" + "".join(f"_{n}_\n\n" for n in s.notes)
                   + (_md_table(s.table) if s.table[1] or not s.notes else ""))
        if s.bookkeeping[1]:
            out.append(f"### {BOOKKEEPING}\n\n{BOOKKEEPING_INTRO}\n\n" + _md_table(s.bookkeeping))
    out.append(f"## Progress\n\n{PROGRESS_INTRO}\n\n" + _md_table(rep.completeness)
               + "".join(f"\n_{n}_\n" for n in rep.beyond))
    out.append(f"## Compute\n\n{COMPUTE_INTRO}\n\n" + _md_table(rep.compute))
    if rep.phases[1]:
        out.append(f"### Per generation\n\n{PHASES_INTRO}\n\n" + _md_table(rep.phases))
    out.append("## Package versions\n\n" + _md_table(rep.packages))
    out.append("## Config\n")
    out += [f"### {label}\n\n```yaml\n{text.rstrip()}\n```\n" for label, text in rep.configs]
    return "\n".join(out)
