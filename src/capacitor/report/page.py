"""One self-contained HTML page: plotly.js inlined once in the head, the charts as divs,
tables and text between them, a small inline style sheet with system fonts. Nothing is
fetched: no script, style sheet, font or image comes from a URL, so the file opens offline
and can be mailed as it is.

The page is deterministic (chart ids are numbered, nothing is timestamped): the same run
gives the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: plotly's chart options: no link to plotly's site, no logo.
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "png"}}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1f2328; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem;
     margin-top: 2.2rem; }
.verdict { font-size: 1.15rem; padding: .8rem 1rem; border-radius: 6px; margin: 1rem 0; }
.ok { background: #dafbe1; border: 1px solid #2da44e; }
.miss { background: #ffebe9; border: 1px solid #cf222e; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: .5rem .8rem;
        border-radius: 6px; margin: .4rem 0; }
.headline { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.headline div { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem .8rem;
                min-width: 9rem; }
.headline b { display: block; font-size: 1.3rem; }
.headline span { color: #59636e; font-size: .85rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .25rem .6rem; text-align: right;
         vertical-align: top; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td.text { max-width: 42rem; }
.muted { color: #59636e; }
details pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }
"""


@dataclass
class Section:
    """A heading, then its parts in order: HTML fragments (escaped by whoever built them)
    and plotly figures."""

    title: str
    parts: list[Any] = field(default_factory=list)

    def text(self, words: str, css: str | None = None) -> Section:
        """A paragraph of plain text (escaped here)."""
        cls = f' class="{css}"' if css else ""
        self.parts.append(f"<p{cls}>{html.escape(words)}</p>")
        return self

    def raw(self, fragment: str) -> Section:
        """An HTML fragment built by the caller (already escaped)."""
        self.parts.append(fragment)
        return self

    def figure(self, fig: Any) -> Section:
        """A plotly figure."""
        self.parts.append(fig)
        return self


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]],
               text_columns: Sequence[int] = (0,)) -> str:
    """An HTML table of ``rows`` (cells are escaped; ``text_columns`` are left-aligned)."""
    head = "".join(f'<th class="text">{html.escape(str(h))}</th>' if i in text_columns
                   else f"<th>{html.escape(str(h))}</th>" for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = "".join(f'<td class="text">{html.escape(str(c))}</td>' if i in text_columns
                        else f"<td>{html.escape(str(c))}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def render_page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The page: ``intro`` (an HTML fragment: the verdict and headline numbers) under the
    title, then each section."""
    import plotly.io as pio
    import plotly.offline

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>",
           f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
           "</head><body><main>", f"<h1>{html.escape(title)}</h1>", intro]
    n = 0
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for part in section.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            n += 1
            out.append(pio.to_html(part, config=PLOT_CONFIG, include_plotlyjs=False,
                                   full_html=False, div_id=f"chart-{n}",
                                   default_height=f"{part.layout.height or 450}px"))
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


__all__ = ["PLOT_CONFIG", "Section", "render_page", "table_html"]
