"""HTML pages as text: what a reader sees, without scripts, styles, navigation, headers and footers.

The rule is structural and predictable: elements that never hold a page's own content (script,
style, nav, header, footer, aside, form, ...; ARIA navigation, banner and contentinfo roles;
hidden ones) are dropped, block elements become line breaks, and runs of white space one space.
A page that lays its menus out in plain divs keeps them; main-content heuristics (trafilatura)
would drop them but also drop short pages whole, which an index must not do silently.
"""

from __future__ import annotations

from pathlib import Path

from lfm_colbert.formats import require

_DROP = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "nav", "header",
         "footer", "aside", "form", "button", "select", "dialog"]
_DROP_CSS = '[role=navigation],[role=banner],[role=contentinfo],[role=search],[hidden],[aria-hidden=true]'
_BLOCKS = ("p,div,section,article,main,h1,h2,h3,h4,h5,h6,li,dt,dd,blockquote,pre,br,hr,tr,table,ul,ol,dl,"
           "figure,figcaption,caption,address,details,summary")
_BREAK = "\u2029"  # marks a block boundary through the whitespace collapsing below


def read_html(raw: bytes) -> tuple[str, str]:
    """(title, visible text) of an HTML document given as bytes: decoded as the HTML Standard says (a
    byte-order mark, else a <meta charset> in the first 1024 bytes, else UTF-8)."""
    lexbor = require("selectolax.lexbor", "html", ".html files")
    tree = lexbor.LexborHTMLParser(raw, encoding=True)
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    tree.strip_tags(_DROP)
    for node in tree.css(_DROP_CSS):
        node.decompose()
    for node in tree.css(_BLOCKS):
        node.insert_after(_BREAK)
    for node in tree.css("td,th"):
        node.insert_after(" ")
    root = tree.body if tree.body is not None else tree.root
    raw_text = root.text(separator="", strip=False) if root is not None else ""
    lines = (" ".join(part.split()) for part in raw_text.split(_BREAK))
    return title, "\n".join(line for line in lines if line)


def read_html_file(path: Path) -> tuple[str, str]:
    return read_html(path.read_bytes())
