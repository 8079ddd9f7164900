"""The study report: figures (matplotlib), report.html (self-contained) and report.md, from metrics and RunViews.

    figures.py   FIGURES, render(views) -> RenderedFigure (PNG bytes + caption)
    html.py      render_html(result, figures): the self-contained report.html
    markdown.py  render_markdown(result, figures, folder): report.md
    summary.py   verdicts, tables and number formats shared by both documents
    views.py     RunView: what the figures draw from one trained model
    sweep.py     the β sweep's page

The package imports nothing itself: matplotlib takes about a second to import, and a command that draws
no figure (`vaelab train`, every training process that compare starts) should not pay it.
"""
