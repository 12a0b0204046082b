"""Find, normalise and reduce URLs: in free text (OCR output) and in decoded code payloads.

What :func:`extract_urls` finds:

* URLs with an ``http``/``https`` scheme; the host may be an IP address, ``localhost``
  or an internationalised name (``http://例子.中国``).
* ``www.`` names (``www.example.com``) and bare names whose last label is an ICANN
  top-level domain (``example.co.jp/path``, ``bit.ly/xyz``, ``münchen.de``), taken
  from the Public Suffix List bundled with ``publicsuffixlist`` (no network).
* Text is NFKC-normalised first, so full-width ``ｅｘａｍｐｌｅ．ｃｏｍ`` is found,
  and zero-width characters and soft hyphens are removed.
* Unambiguous obfuscations: ``example[.]com``, ``example(.)com``, ``example{.}com``,
  ``example[dot]com`` (any bracket, any case), ``hxxp://``/``hxxps://``/``http[:]//``,
  ``example。com`` (ideographic full stop between ASCII letters), spaces around the dot
  only before ``com``/``net``/``org`` (``example . com``, ``example. COM``) and after
  ``www`` (``www . example.com``).

What it leaves out, on purpose, to keep ordinary sentences free of false positives:

* numbers and versions (``3.50``, ``1.2.3``), abbreviations (``e.g.``, ``a.m.``) and
  file names whose extension is not a TLD (``photo.jpg``);
* bare names whose TLD doubles as a common file extension (``archive.zip``,
  ``clip.mov``, ``README.md``, ``setup.py``) unless written with a path or port;
* bare names with a capitalised TLD (``home.It``, a missing space after a full stop),
  except ``Com``/``Net``/``Org``; all-lowercase and all-uppercase TLDs are accepted;
* e-mail addresses (``name@example.com`` is contact data, not a link);
* bare IP addresses, and bare names written in scripts without spaces between words
  (Chinese, Japanese, Thai...), whose start cannot be told from the text before them:
  these are found only after ``http(s)://`` or ``www.``;
* ``dot`` spelled out without brackets (``the dot com era``).

A name that runs on into the next sentence (``example.com.Next``) is cut back to the
longest valid host. Paths stop at the first non-ASCII character or space, trailing
punctuation and unbalanced closing brackets are dropped, and a URL is cut at 2048
characters.

:func:`registrable_domain` uses the full Public Suffix List (ICANN and private
sections), so ``foo.github.io`` and ``shop.example.com.tw`` reduce as browsers do.
The bundled list is a snapshot; a new suffix appears with a package update.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

import idna

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "extract_urls",
    "normalize_url",
    "registrable_domain",
    "url_host",
    "urls_from_payload",
]

# Scripts written without spaces between words: a bare name cannot start inside them.
_NOSPACE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\uac00-\ud7af"  # Hangul syllables
)
# A label character of a script that separates words with spaces (letters, digits, hyphen).
_SP = rf"[^\W_{_NOSPACE}]"
_SP_LABEL = rf"{_SP}(?:(?:{_SP}|-){{0,61}}{_SP})?"
_NS_LABEL = rf"[{_NOSPACE}]{{1,63}}"
_ANY_LABEL = rf"(?:{_SP_LABEL}|{_NS_LABEL})"
_PATH_CHARS = r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]"
_PORT = r"(?::\d{1,5})"
_PATH = rf"(?:[/?#]{_PATH_CHARS}*)"
_TLD = rf"(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}}|{_SP}{{2,63}})"
_BOUNDARY = rf"(?<![@.\-_/\\]|{_SP})"

_URL_RE = re.compile(
    rf"""
    (?P<scheme>https?)://
        (?:[^\s/?#@<>"']+@)?
        (?P<shost>\[[0-9A-Fa-f:.]+\]|{_ANY_LABEL}(?:\.{_ANY_LABEL})*\.?)
        (?P<sport>{_PORT})?(?P<spath>{_PATH})?
    | {_BOUNDARY}(?P<www>(?:www|WWW)\.(?:{_ANY_LABEL}\.)+{_ANY_LABEL})
        (?P<wport>{_PORT})?(?P<wpath>{_PATH})?
    | {_BOUNDARY}(?P<bare>(?:{_SP_LABEL}\.)+{_TLD})
        (?!{_SP}|[-_])(?P<bport>{_PORT}(?!\d))?(?P<bpath>{_PATH})?
    """,
    re.VERBOSE | re.IGNORECASE,
)

_INVISIBLE_RE = re.compile("[\u00ad\u200b-\u200d\u2060\ufeff]")
_BRACKET_DOT_RE = re.compile(r"\s*[\[({<]\s*(?:\.|dot)\s*[\])}>]\s*", re.IGNORECASE)
_SCHEME_OBFUSCATION_RE = re.compile(
    r"\b(?:hxxp|h\*\*p|http)(s?)\s*(?:\[:\]|\(:\)|:)\s*//", re.IGNORECASE
)
_IDEOGRAPHIC_DOT_RE = re.compile(r"(?<=[A-Za-z0-9])。(?=[A-Za-z0-9])")
_SPACED_DOT_RE = re.compile(
    r"(?<=[A-Za-z0-9])(?:[ \t]+\.[ \t]*|\.[ \t]+)(?=(?:com|net|org|COM|NET|ORG)(?![A-Za-z0-9]))"
)
_SPACED_WWW_RE = re.compile(r"\b(www|WWW)[ \t]*\.[ \t]*(?=[A-Za-z0-9])")
_ASCII_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SCHEME_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_TRAILING = ".,;:!?*'\"-_~"
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}

# TLDs that are also common file extensions: bare names ending in them need a path.
_FILE_EXTENSION_TLDS = frozenset(
    {"zip", "mov", "py", "md", "rs", "sh", "ps", "java", "properties", "map", "cab"}
)
_TITLE_CASE_TLDS = frozenset({"com", "net", "org"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL = 2048  # longer paths are cut: a result is for people and domain lists


@cache
def _psl() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@cache
def _icann() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=True, accept_unknown=False)


def _deobfuscate(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE_RE.sub("", text)
    text = _SCHEME_OBFUSCATION_RE.sub(lambda m: f"http{m.group(1).lower()}://", text)
    text = _BRACKET_DOT_RE.sub(".", text)
    text = _IDEOGRAPHIC_DOT_RE.sub(".", text)
    text = _SPACED_WWW_RE.sub(lambda m: f"{m.group(1)}.", text)
    return _SPACED_DOT_RE.sub(".", text)


def _trim_tail(url: str) -> str:
    """Drop trailing punctuation and closing brackets that the URL did not open."""
    while url:
        last = url[-1]
        unopened = last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last])
        if last in _TRAILING or unopened:
            url = url[:-1]
        else:
            break
    return url


def _encode_host(host: str) -> str:
    """Lower-case, drop the trailing dot and convert to ASCII (punycode); ValueError if invalid."""
    host = host.strip().rstrip(".")
    if not host:
        raise ValueError("empty host")
    if host.startswith("[") and host.endswith("]"):
        return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(f"invalid host {host!r}: {exc}") from exc
    if len(host) > 253:
        raise ValueError("host too long")
    labels = host.split(".")
    if not all(_ASCII_LABEL_RE.match(lab) for lab in labels):
        raise ValueError(f"invalid host {host!r}")
    return host


def _known_tld(tld: str, *, bare: bool, has_path: bool) -> bool:
    try:
        ascii_tld = _encode_host(tld)
    except ValueError:
        return False
    if not _icann().is_public(ascii_tld):
        return False
    if not bare:
        return True
    mixed_case = tld.isascii() and not (tld.islower() or tld.isupper())
    if mixed_case and not (tld.istitle() and ascii_tld in _TITLE_CASE_TLDS):
        return False
    return has_path or ascii_tld not in _FILE_EXTENSION_TLDS


def _valid_host(host: str, *, bare: bool, has_path: bool) -> bool:
    try:
        _encode_host(host)
    except ValueError:
        return False
    labels = host.rstrip(".").split(".")
    if len(labels) < 2:
        return False
    return _known_tld(labels[-1], bare=bare, has_path=has_path)


def _shorten(host: str, *, bare: bool) -> str | None:
    """The longest prefix of ``host`` (whole labels, at least two) that is a valid name."""
    labels = host.split(".")[:128]  # a valid name has at most 127 labels
    for n in range(len(labels) - 1, 1, -1):
        candidate = ".".join(labels[:n])
        if _valid_host(candidate, bare=bare, has_path=False):
            return candidate
    return None


def _candidate(m: re.Match[str]) -> str | None:
    raw = _candidate_url(m)
    return raw if raw is None or len(raw) <= _MAX_URL else raw[:_MAX_URL]


def _candidate_url(m: re.Match[str]) -> str | None:
    if m.group("scheme"):
        host = m.group("shost")
        tail = (m.group("sport") or "") + _trim_tail(m.group("spath") or "")
        if not host.startswith("[") and not _is_ip(host):
            try:
                _encode_host(host)
            except ValueError:
                return None
        return f"{m.group('scheme')}://{host}{tail}"
    if m.group("www"):
        host, port, path, bare = m.group("www"), m.group("wport"), m.group("wpath"), False
    else:
        host, port, path, bare = m.group("bare"), m.group("bport"), m.group("bpath"), True
    path = _trim_tail(path or "")
    has_path = bool(port or path)
    if _valid_host(host, bare=bare, has_path=has_path):
        return f"{host}{port or ''}{path}"
    short = _shorten(host, bare=bare)
    if short is None or (not bare and short.count(".") < 2):
        return None
    return short


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def extract_urls(text: str) -> list[str]:
    """URLs found in ``text``, normalised (see :func:`normalize_url`), unique, in order."""
    if not text:
        return []
    out: list[str] = []
    seen: set[str] = set()
    for m in _URL_RE.finditer(_deobfuscate(text)):
        raw = _candidate(m)
        if raw is None:
            continue
        try:
            url = normalize_url(raw)
        except ValueError:
            continue
        if url not in seen:
            seen.add(url)
            out.append(url)
    return out


def normalize_url(url: str) -> str:
    """A canonical form of ``url`` for display, de-duplication and domain lists.

    Adds ``http://`` when no scheme is given, lower-cases scheme and host, converts an
    internationalised host to punycode, drops a trailing dot on the host, user info,
    default ports (80/443) and the fragment, and keeps path and query (percent-encoding
    characters that must be). An empty path becomes ``/``. Raises ValueError when the
    host is not a valid name or address.
    """
    url = url.strip()
    if not _SCHEME_PREFIX_RE.match(url):
        url = "http://" + url.lstrip("/")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        host += "]"
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = netloc.partition(":")
    host = _encode_host(host)
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port {port_text!r}")
        port = int(port_text)
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~") or "/"
    query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def url_host(url: str) -> str:
    """The ASCII host of a URL (normalised first); ValueError if it has none."""
    return urlsplit(normalize_url(url)).hostname or ""


def registrable_domain(host: str) -> str:
    """The registrable domain ("eTLD+1") of a host or URL, e.g. ``example.co.jp``.

    Uses the bundled Public Suffix List, private section included, so hosted
    sub-domains such as ``foo.github.io`` stay whole. IP addresses, single-label
    hosts and public suffixes themselves come back unchanged (lower-case, punycode).
    Raises ValueError for an empty or invalid host.
    """
    host = host.strip()
    if _is_ip(host):
        return ipaddress.ip_address(host.strip("[]")).compressed
    if "/" in host or "@" in host or _SCHEME_PREFIX_RE.match(host):
        host = url_host(host).strip("[]")
    else:
        host = _encode_host(host.rpartition(":")[0] if host.count(":") == 1 else host)
    if _is_ip(host):
        return host
    return _psl().privatesuffix(host) or host


# --- code payloads -----------------------------------------------------------------

_PHONE_FIELDS = frozenset({"TEL", "TEL-AV", "BDAY"})
_DOCOMO_FIELD_RE = re.compile(r"([A-Z\-]+):((?:\\.|[^;\\])*);?")


def _docomo_fields(body: str) -> list[tuple[str, str]]:
    """``KEY:value;KEY:value;;`` fields of MECARD/MEBKM/MATMSG payloads, unescaped."""
    fields = []
    for m in _DOCOMO_FIELD_RE.finditer(body):
        value = re.sub(r"\\(.)", r"\1", m.group(2))
        fields.append((m.group(1).upper(), value))
    return fields


def _query_text(query: str, keys: tuple[str, ...]) -> str:
    params = parse_qs(query, keep_blank_values=True)
    return "\n".join(v for k in keys for v in params.get(k, []))


def urls_from_payload(payload: str) -> list[str]:
    """URLs carried by a decoded QR code or barcode payload, normalised.

    Understands ``URLTO:``, ``MEBKM:`` (bookmark), ``MECARD:``/vCard (URL fields and
    text), ``MATMSG:`` and ``mailto:`` (subject and body, not the address),
    ``SMSTO:``/``sms:`` (message text) and plain text. ``WIFI:``, ``tel:`` and ``geo:``
    payloads carry no URL.
    """
    text = payload.strip()
    head = text[:12].upper()
    if head.startswith(("WIFI:", "TEL:", "GEO:")):
        return []
    if head.startswith("URLTO:"):
        return extract_urls(text[6:])
    if head.startswith(("MEBKM:", "MECARD:", "MATMSG:")):
        fields = _docomo_fields(text.partition(":")[2])
        return extract_urls("\n".join(v for k, v in fields if k not in _PHONE_FIELDS))
    if head.startswith("SMSTO:") or head.startswith("MMSTO:"):
        return extract_urls(text[6:].partition(":")[2])
    if head.startswith(("SMS:", "MAILTO:")):
        rest = text.partition(":")[2]
        target, _, query = rest.partition("?")
        if head.startswith("SMS:") and not query:
            # sms:NUMBER:message is seen in the wild alongside sms:NUMBER?body=message
            return extract_urls(target.partition(":")[2])
        return extract_urls(_query_text(query, ("subject", "body")))
    return extract_urls(text)
