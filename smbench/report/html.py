"""HTML renderer: one self-contained file (inline CSS and SVG, no scripts, no external URLs).

Every value goes through Jinja2's autoescape; only the SVG charts, which charts.py
produces with text drawn as paths, are marked safe.
"""
from __future__ import annotations

from markupsafe import Markup

from .charts import all_charts
from .data import ReportData
from .fmt import environment


def render_html(report: ReportData) -> str:
    charts = {k: Markup(v) if v else None for k, v in all_charts(report.charts, report.ablation).items()}
    return environment(autoescape=True).get_template("report.html.j2").render(r=report, charts=charts)
