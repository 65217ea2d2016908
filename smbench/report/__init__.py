"""Reports from run records: `smbench report RUN... -o reports/NAME` -> NAME.md and NAME.html.

Layout (after pyinstrument's renderers): data.py turns records into plain
dataclasses, sources.py finds the records, charts.py draws SVG, and markdown.py /
html.py each render one format from Jinja2 templates under templates/.
Importing this package is cheap; matplotlib loads only when HTML is rendered.
"""
from __future__ import annotations

from pathlib import Path


def build_report(refs: list[str], store, out_base: Path):
    """ReportData for the records `refs` (run ids or paths), links relative to `out_base`'s folder."""
    from . import data, sources

    src = sources.load_refs(refs, store)
    out_dir = Path(out_base).parent
    run = src.runs[0]
    others = [r.record for r in src.runs[1:]]
    return data.build(run.record, others, src.kernels.record if src.kernels else None, src.kernels_origin,
                      sources.profile_infos(src, out_dir), sources.artifacts(run.path.parent, out_dir))


def write_report(refs: list[str], store, out_base: Path | str) -> list[Path]:
    """Write NAME.md and NAME.html for `out_base` = .../NAME; returns the paths written."""
    from engine.weights import atomic_write_bytes

    from .html import render_html
    from .markdown import render_markdown

    out_base = Path(out_base)
    if out_base.suffix in (".md", ".html"):
        out_base = out_base.with_suffix("")
    report = build_report(refs, store, out_base)
    paths = []
    for suffix, text in ((".md", render_markdown(report)), (".html", render_html(report))):
        path = out_base.with_name(out_base.name + suffix)
        atomic_write_bytes(path, text.encode("utf-8"))
        path.chmod(0o644)  # mkstemp's 0600 is wrong for a shareable document
        paths.append(path)
    return paths
