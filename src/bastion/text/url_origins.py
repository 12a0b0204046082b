"""Where the URLs of a result were found: in decoded codes and in OCR text lines.

A result lists its URLs twice: ``urls``, every distinct URL, and ``url_origins``, one
:class:`~bastion.results.UrlOrigin` per code or text line carrying a URL, with that
code's or line's position. :func:`url_origins` builds the second from a result's codes
(their payload URLs, read by the code reader) and text lines (searched here with
:func:`~bastion.text.urls.extract_urls`), and :func:`distinct_urls` gives the first
from it, so the text is searched once and whoever reads a result (rules, lists) can
tell a URL on a QR code from one written on the picture without searching again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from bastion.results import Code, TextLine, UrlOrigin, UrlSource
from bastion.text.urls import extract_urls

__all__ = ["distinct_urls", "url_origins"]

_EVERY_SOURCE: tuple[UrlSource, ...] = ("codes", "text")


def url_origins(codes: Sequence[Code], text: Sequence[TextLine]) -> list[UrlOrigin]:
    """Every URL of ``codes`` and ``text`` with where it was found: codes first, then
    text lines, each in order; a URL found in several places is listed for each."""
    found = [
        UrlOrigin(url=url, source="codes", index=i, frame=code.frame)
        for i, code in enumerate(codes)
        for url in code.urls
    ]
    found += [
        UrlOrigin(url=url, source="text", index=i, frame=line.frame)
        for i, line in enumerate(text)
        for url in extract_urls(line.text)
    ]
    return found


def distinct_urls(
    origins: Iterable[UrlOrigin], sources: Collection[UrlSource] = _EVERY_SOURCE
) -> list[str]:
    """The URLs of ``origins`` from ``sources``, each once, in the order first found."""
    return list(dict.fromkeys(o.url for o in origins if o.source in sources))
