"""Markdown renderer: templates/report.md.j2 over ReportData (charts live in the HTML)."""
from __future__ import annotations

from .data import ReportData
from .fmt import environment


def render_markdown(report: ReportData) -> str:
    return environment(autoescape=False).get_template("report.md.j2").render(r=report)
