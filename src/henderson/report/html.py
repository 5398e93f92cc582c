"""Self-contained HTML reports: tables and base64-embedded PNG figures, one file."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

import numpy as np
import pandas as pd

CSS = """
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1a202c;
       background: #f7fafc; margin: 0; line-height: 1.45; font-size: 15px; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; background: #fff;
       min-height: 100vh; box-shadow: 0 0 0 1px #e2e8f0; }
header { border-bottom: 3px solid #2b6cb0; margin-bottom: 12px; padding-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; }
.meta { color: #4a5568; font-size: 13px; }
h2 { font-size: 20px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e2e8f0; color: #2c5282; }
h3 { font-size: 16px; margin: 18px 0 6px; }
p { margin: 6px 0 10px; }
.note { color: #4a5568; font-size: 13px; }
.callout { background: #ebf8ff; border-left: 4px solid #2b6cb0; padding: 8px 12px; margin: 10px 0; }
.warn { background: #fffaf0; border-left: 4px solid #dd6b20; padding: 8px 12px; margin: 10px 0; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 13.5px; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 2px 0 6px; color: #2d3748; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e2e8f0; white-space: nowrap; }
.tablewrap { overflow-x: auto; max-width: 100%; }
th { background: #edf2f7; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, Menlo, Consolas, monospace; }
tbody tr:nth-child(even) { background: #f9fbfd; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.grid > div { flex: 0 1 auto; min-width: 0; }
.grid > div.fig { flex: 0 1 500px; }
.grid > div.fig img { width: 100% !important; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid #edf2f7; }
figcaption { font-size: 12.5px; color: #4a5568; }
pre { background: #f7fafc; border: 1px solid #e2e8f0; padding: 10px; font-size: 12.5px; overflow-x: auto; }
dl.kv { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 13.5px; margin: 6px 0 12px; }
dl.kv dt { color: #4a5568; } dl.kv dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; }
footer { margin-top: 36px; color: #718096; font-size: 12px; border-top: 1px solid #e2e8f0; padding-top: 8px; }
"""


def _fmt(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return ""
        if v != 0 and (abs(float(v)) < 10 ** -(digits - 1) or abs(float(v)) >= 1e7):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}f}"
    return str(v)


def table_html(
    frame: pd.DataFrame, caption: str | None = None, digits: int = 4, index: bool = True, max_rows: int = 200
) -> str:
    """A DataFrame as an HTML table: numbers right-aligned with ``digits`` decimals."""
    f = frame.head(max_rows)
    cols = list(f.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ([f.index.name or ""] if index else []) + cols)
    rows = []
    values = [f.iloc[:, j].tolist() for j in range(len(cols))]  # per column: keeps int columns int
    for i, idx in enumerate(f.index):
        cells = [f"<th>{html.escape(str(idx))}</th>"] if index else []
        for j in range(len(cols)):
            v = values[j][i]
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            cells.append(
                f'<td class="num">{_fmt(v, digits)}</td>' if num else f"<td>{html.escape(_fmt(v, digits))}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    more = f'<p class="note">First {max_rows} of {len(frame)} rows shown.</p>' if len(frame) > max_rows else ""
    return (
        f'<div class="tablewrap"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


class Report:
    """Build a one-file HTML report section by section.

    >>> import tempfile, pathlib
    >>> r = Report("My analysis").section("Data").text("Hello")
    >>> out = r.write(pathlib.Path(tempfile.mkdtemp()) / "report.html")
    >>> out.read_text().startswith("<!DOCTYPE html>")
    True
    """

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self.parts: list[str] = []
        self._open_grid = False

    def section(self, title: str, level: int = 2) -> Report:
        self.end_grid()
        self.parts.append(f"<h{level}>{html.escape(title)}</h{level}>")
        return self

    def text(self, text: str, cls: str | None = None) -> Report:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")
        return self

    def html(self, raw: str) -> Report:
        self.parts.append(raw)
        return self

    def callout(self, text: str, warn: bool = False) -> Report:
        self.parts.append(f'<div class="{"warn" if warn else "callout"}">{html.escape(text)}</div>')
        return self

    def pre(self, text: str) -> Report:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def kv(self, items: dict) -> Report:
        body = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items.items())
        self.parts.append(f'<dl class="kv">{body}</dl>')
        return self

    def table(
        self, frame: pd.DataFrame, caption: str | None = None, digits: int = 4, index: bool = True, max_rows: int = 200
    ) -> Report:
        self.parts.append(self._wrap(table_html(frame, caption, digits, index, max_rows)))
        return self

    def image(self, png: bytes, caption: str | None = None, width: int | None = None, alt: str | None = None) -> Report:
        """An embedded PNG; ``alt`` says what the figure shows (defaults to the caption)."""
        alt = alt or caption
        if not alt:
            raise ValueError("a report figure needs alt text or a caption (screen readers, broken images)")
        b64 = base64.b64encode(png).decode("ascii")
        w = f' style="width:{width}px"' if width else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        alt = html.escape(alt, quote=True)
        fig = f'<figure><img{w} alt="{alt}" src="data:image/png;base64,{b64}">{cap}</figure>'
        if self._open_grid:
            basis = f' style="flex-basis:{width}px"' if width else ""
            fig = f'<div class="fig"{basis}>{fig}</div>'
        self.parts.append(fig)
        return self

    def start_grid(self) -> Report:
        """Put the following tables/figures side by side (until the next section)."""
        self.end_grid()
        self.parts.append('<div class="grid">')
        self._open_grid = True
        return self

    def end_grid(self) -> Report:
        if self._open_grid:
            self.parts.append("</div>")
            self._open_grid = False
        return self

    def _wrap(self, s: str, cls: str = "") -> str:
        c = f' class="{cls}"' if cls else ""
        return f"<div{c}>{s}</div>" if self._open_grid else s

    def render(self) -> str:
        from .._version import __version__

        self.end_grid()
        now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        sub = f'<div class="meta">{html.escape(self.subtitle)}</div>' if self.subtitle else ""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{html.escape(self.title)}</h1>{sub}</header>"
            + "\n".join(self.parts)
            + f"<footer>Generated by henderson {html.escape(__version__)} on {now}. "
            "Self-contained file: figures are embedded.</footer></main></body></html>\n"
        )

    def write(self, path) -> Path:
        path = Path(path)
        path.write_text(self.render(), encoding="utf-8")
        return path
