"""Render page models to HTML with Jinja2.

Autoescaping is on for every template, and undefined names fail loudly, so a typo in a
template breaks the build instead of leaving a blank on the page.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from .pages import Page

__all__ = [
    "CSP_MULTI_PAGE",
    "csp_single_file",
    "environment",
    "render_page",
    "render_single",
    "stylesheet",
    "templates_dir",
]

# Pages run no script, load nothing from the network, and take styles and images only
# from the site itself (or, in single-file mode, from the one hashed <style> and data URIs).
_CSP = "default-src 'none'; img-src {img}; style-src {style}; base-uri 'none'; form-action 'none'"
CSP_MULTI_PAGE = _CSP.format(img="'self'", style="'self'")


def csp_single_file(style: str) -> str:
    """Return the policy of a single-file page whose only style is the ``<style>`` text given."""
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    return _CSP.format(img="data:", style=f"'sha256-{digest}'")


def templates_dir() -> Path:
    """Find the templates: inside the installed package (wheel), else beside it (source)."""
    packaged = Path(str(resources.files("reportgen"))) / "templates"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2] / "templates"
    if source.is_dir():
        return source
    raise FileNotFoundError(
        f"featreport's templates are missing (looked in {packaged} and {source})"
    )


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Return the Jinja2 environment: autoescaping on, undefined names an error."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def stylesheet() -> str:
    """Return the site's stylesheet."""
    return (templates_dir() / "style.css").read_text(encoding="utf-8")


def render_page(page: Page) -> str:
    """Render one page of a multi-page site."""
    return environment().get_template("page.html").render(page=page, csp=CSP_MULTI_PAGE)


def render_single(pages: Iterable[Page], title: str, css: str) -> Iterator[str]:
    """Render every page as a section of one self-contained document, piece by piece.

    The pages are taken from ``pages`` one at a time, as the document reaches them, so a
    page model is dropped as soon as its section is written.
    """
    stream = iter(pages)
    first = next(stream)
    # The stylesheet is featreport's own packaged file, never user text: trusted, unescaped.
    style = f"\n{css}\n"
    return (
        environment()
        .get_template("single.html")
        .generate(
            first=first,
            pages=itertools.chain([first], stream),
            title=title,
            style=Markup(style),
            csp=csp_single_file(style),
        )
    )
