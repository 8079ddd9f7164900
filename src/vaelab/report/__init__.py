"""The study report: figures (matplotlib), report.html (self-contained) and report.md, from metrics and RunViews."""

from vaelab.report.figures import FIGURES, RenderedFigure, render
from vaelab.report.html import render_html
from vaelab.report.markdown import render_markdown
from vaelab.report.summary import Verdict, table, verdicts
from vaelab.report.views import RunView, build_view

__all__ = ["FIGURES", "RenderedFigure", "RunView", "Verdict", "build_view", "render", "render_html",
           "render_markdown", "table", "verdicts"]
