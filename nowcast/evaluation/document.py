"""A tiny document model for the evaluation report, rendered both as Markdown and as HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np


def fmt(x: Any) -> str:
    """4 significant digits; '–' for a missing value."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


class Doc:
    """A tiny document model rendered both as Markdown and as HTML (one source, two outputs)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[tuple[str, Any]] = []

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, lines: Sequence[str]) -> None:
        if lines:
            self.blocks.append(("ul", list(lines)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(c) for c in header], [[fmt(c) for c in r] for r in rows])))

    def img(self, src: str, alt: str) -> None:
        self.blocks.append(("img", (src, alt)))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "h":
                out += [f"{'#' * val[0]} {val[1]}", ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "ul":
                out += [f"- {x}" for x in val] + [""]
            elif kind == "table":
                cell = lambda s: s.replace("|", "\\|")  # noqa: E731
                out += ["| " + " | ".join(map(cell, val[0])) + " |",
                        "|" + "|".join("---" for _ in val[0]) + "|"]
                out += ["| " + " | ".join(map(cell, r)) + " |" for r in val[1]] + [""]
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", ""]
            elif kind == "pre":
                out += ["```", val, "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{e(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(val)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in val) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{e(c)}</th>" for c in val[0])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                               for r in val[1])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "img":
                body.append(f'<figure><img src="{e(val[0])}" alt="{e(val[1])}"><figcaption>{e(val[1])}'
                            "</figcaption></figure>")
            elif kind == "pre":
                body.append(f"<pre>{e(val)}</pre>")
        style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
                 "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
                 "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}"
                 "th:first-child,td:first-child{text-align:left}img{max-width:100%}"
                 "pre{background:#f6f6f6;padding:0.5em;overflow-x:auto;font-size:12px}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{e(self.title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape, then turn Markdown **bold** into <b> (the only inline markup the report uses)."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
