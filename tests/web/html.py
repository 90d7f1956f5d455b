"""Read pages the way a user sees them: visible text, and tables as rows of cell texts."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Tags that separate words on screen; inline tags (strong, a, span, kbd, …) do not.
BLOCKS = {
    "p",
    "div",
    "section",
    "article",
    "header",
    "main",
    "nav",
    "li",
    "ul",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "br",
    "button",
    "form",
    "pre",
    "title",
}


class _Page(HTMLParser):
    """Collect visible text and every table's rows (no nested tables on our pages)."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []
        self.tables: list[dict] = []
        self._open: list[dict] = []
        self._cell: list[str] | None = None
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in BLOCKS:
            self.texts.append(" ")
        if tag in ("script", "style", "template"):
            self._hidden += 1
        elif tag == "table":
            table = {"class": (attrs.get("class") or "").split(), "rows": []}
            self.tables.append(table)
            self._open.append(table)
        elif tag == "tr" and self._open:
            self._open[-1]["rows"].append([])
        elif tag in ("td", "th") and self._open:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in BLOCKS:
            self.texts.append(" ")
        if tag in ("script", "style", "template"):
            self._hidden -= 1
        elif tag == "table" and self._open:
            self._open.pop()
        elif tag in ("td", "th") and self._cell is not None and self._open:
            self._open[-1]["rows"][-1].append(_squash(" ".join(self._cell)))
            self._cell = None

    def handle_data(self, data):
        if self._hidden:
            return
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _squash(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def text(html: str) -> str:
    """The page's visible text with whitespace collapsed."""
    return _squash("".join(_parse(html).texts))


def table(html: str, css_class: str) -> list[list[str]]:
    """Rows (header row included) of the first table carrying `css_class`."""
    for found in _parse(html).tables:
        if css_class in found["class"]:
            return found["rows"]
    raise AssertionError(f"no table with class {css_class!r} on the page")
