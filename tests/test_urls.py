"""URL extraction, normalisation, registrable domains, code payload formats, and where a
result's URLs were found."""

from __future__ import annotations

import pytest

from bastion.results import Code, TextLine, UrlOrigin
from bastion.text.url_origins import distinct_urls, url_origins
from bastion.text.urls import (
    extract_urls,
    normalize_url,
    registrable_domain,
    url_host,
    urls_from_payload,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # with a scheme
        ("Visit https://Example.COM:443/Path?q=1#frag now", ["https://example.com/Path?q=1"]),
        ("HTTP://EXAMPLE.COM", ["http://example.com/"]),
        ("http://192.168.0.1:8080/admin", ["http://192.168.0.1:8080/admin"]),
        ("http://localhost:8000/x", ["http://localhost:8000/x"]),
        ("http://[::1]:80/", ["http://[::1]/"]),
        ("https://user:pw@Example.com./a b", ["https://example.com/a"]),
        ("请访问https://example.com/abc获取优惠", ["https://example.com/abc"]),
        ("https://example.com获取优惠", ["https://example.com/"]),
        # bare names and www
        ("go to www.example.com.", ["http://www.example.com/"]),
        ("example.co.jp/path and bit.ly/xyz", ["http://example.co.jp/path", "http://bit.ly/xyz"]),
        ("t.me/channel, wa.me/123456", ["http://t.me/channel", "http://wa.me/123456"]),
        ("shop.example.com.tw", ["http://shop.example.com.tw/"]),
        ("ASP.NET", ["http://asp.net/"]),
        ("Google.Com", ["http://google.com/"]),
        ("example.com:8080/x", ["http://example.com:8080/x"]),
        ("abc.xyz.", ["http://abc.xyz/"]),
        ("访问example.com获取优惠", ["http://example.com/"]),
        ("사이트 example.com에서", ["http://example.com/"]),
        ("ดูที่ example.co.th ค่ะ", ["http://example.co.th/"]),
        ("line\nwww.test.co.uk/abc,", ["http://www.test.co.uk/abc"]),
        ("example.com.Next sentence", ["http://example.com/"]),
        # punctuation and brackets around
        ("(see example.com/foo)", ["http://example.com/foo"]),
        (
            "[link](https://en.wikipedia.org/wiki/Foo_(bar))",
            ["https://en.wikipedia.org/wiki/Foo_(bar)"],
        ),
        ('"https://example.com/a?b=1",', ["https://example.com/a?b=1"]),
        # full width, IDN
        ("ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ", ["http://www.example.com/"]),
        ("ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ／ａｂｃ", ["https://example.com/abc"]),
        ("münchen.de", ["http://xn--mnchen-3ya.de/"]),
        ("пример.рф", ["http://xn--e1afmkfd.xn--p1ai/"]),
        ("http://例子.中国/", ["http://xn--fsqu00a.xn--fiqs8s/"]),
        ("www.例子.中国", ["http://www.xn--fsqu00a.xn--fiqs8s/"]),
        # obfuscations
        ("example[.]com", ["http://example.com/"]),
        ("example(dot)com", ["http://example.com/"]),
        ("example [ DOT ] com/x", ["http://example.com/x"]),
        ("hxxps://evil[.]com/login", ["https://evil.com/login"]),
        ("http[:]//evil.com", ["http://evil.com/"]),
        ("example。com", ["http://example.com/"]),
        ("example . com", ["http://example.com/"]),
        ("www . example . com", ["http://www.example.com/"]),
        ("visit example. COM today", ["http://example.com/"]),
        ("exam\u200bple.com", ["http://example.com/"]),
        # de-duplicated, in order
        (
            "b.com a.com https://b.com/ B.COM",
            ["http://b.com/", "http://a.com/", "https://b.com/"],
        ),
    ],
)
def test_extract_urls(text: str, expected: list[str]) -> None:
    assert extract_urls(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I paid 3.50 for lunch",
        "e.g. this, i.e. that",
        "a.m. and p.m. in the U.S.A.",
        "photo.jpg IMG_1234.JPEG report.pdf data.json index.html",
        "archive.zip clip.mov README.md setup.py run.sh",
        "version 1.2.3 and Python 3.11.4",
        "I went home.It was late",
        "Mr.Smith said no.",
        "Node.js and Vue.js",
        "the dot com bubble",
        "write to john@example.com",
        "yaml.safe_load(stream)",
        "file.tar.gz",
        "192.168.0.1",
        "Price: $5.99/month",
        "Call +1 555 123 4567",
        "",
        "这是测试。网站很好。公司",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert extract_urls(text) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("Example.com", "http://example.com/"),
        ("HTTP://EXAMPLE.COM:80", "http://example.com/"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a#b", "https://example.com:8443/a"),
        ("//x.com", "http://x.com/"),
        ("example.com./p?q=ä", "http://example.com/p?q=%C3%A4"),
        ("https://Bücher.DE/Path/Keep?Case=1", "https://xn--bcher-kva.de/Path/Keep?Case=1"),
        ("https://ｅｘａｍｐｌｅ．ｃｏｍ", "https://example.com/"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["http://exa mple.com", "http://-bad-.com", "http://", "x:99999"])
def test_normalize_url_rejects_invalid_hosts(url: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(url)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.Example.co.uk", "example.co.uk"),
        ("a.b.example.com.tw", "example.com.tw"),
        ("shop.example.co.jp", "example.co.jp"),
        ("x.example.co.kr", "example.co.kr"),
        ("x.example.com.cn", "example.com.cn"),
        ("x.example.co.th", "example.co.th"),
        ("x.example.co.id", "example.co.id"),
        ("x.example.com.au", "example.com.au"),
        ("https://a.b.example.com/x?y", "example.com"),
        ("foo.github.io", "foo.github.io"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("example.com:8080", "example.com"),
        ("192.168.0.1", "192.168.0.1"),
        ("[::1]", "::1"),
        ("localhost", "localhost"),
        ("co.uk", "co.uk"),
    ],
)
def test_registrable_domain(host: str, expected: str) -> None:
    assert registrable_domain(host) == expected


@pytest.mark.parametrize("host", ["", "exa mple.com", "-x-.com"])
def test_registrable_domain_rejects_invalid_hosts(host: str) -> None:
    with pytest.raises(ValueError):
        registrable_domain(host)


def test_very_long_urls_are_cut() -> None:
    (url,) = extract_urls("see example.com/" + "a/" * 5000)
    assert url.startswith("http://example.com/a/a/") and len(url) <= 2048 + len("http://")


def test_url_host() -> None:
    assert url_host("HTTPS://www.Example.com:8443/x") == "www.example.com"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("URLTO:example.com/x", ["http://example.com/x"]),
        ("urlto:https://example.com", ["https://example.com/"]),
        ("MEBKM:TITLE:My site;URL:http\\://example.com/a\\;b;;", ["http://example.com/a;b"]),
        ("MEBKM:TITLE:x;URL:https://example.org/p;;", ["https://example.org/p"]),
        ("WIFI:T:WPA;S:example.com;P:pass.word;;", []),
        ("SMSTO:+12345:see bit.ly/abc", ["http://bit.ly/abc"]),
        ("sms:+1?body=go%20to%20x.com/y", ["http://x.com/y"]),
        ("mailto:a@b.com?subject=hi&body=go%20to%20example.org", ["http://example.org/"]),
        ("mailto:a@b.com", []),
        ("tel:+123456", []),
        ("geo:48.85,2.35", []),
        (
            "MECARD:N:Doe,John;TEL:123;EMAIL:j@x.com;URL:www.example.com;;",
            ["http://www.example.com/"],
        ),
        ("MATMSG:TO:a@b.com;SUB:Hi;BODY:visit example.net;;", ["http://example.net/"]),
        ("BEGIN:VCARD\nVERSION:3.0\nURL:https://ex.com\nEND:VCARD", ["https://ex.com/"]),
        ("HTTPS://EXAMPLE.COM/ABC", ["https://example.com/ABC"]),
        ("5901234123457", []),
        ("Hello world", []),
    ],
)
def test_urls_from_payload(payload: str, expected: list[str]) -> None:
    assert urls_from_payload(payload) == expected


def test_long_input_is_fast() -> None:
    import time

    text = ("word " * 2000 + "a" * 5000 + ". ") * 5 + "example.com"
    start = time.perf_counter()
    assert extract_urls(text) == ["http://example.com/"]
    assert time.perf_counter() - start < 2.0


def _line(text: str, frame: int | None = None) -> TextLine:
    return TextLine(text=text, confidence=90, engine="t", frame=frame)


def _code(text: str, frame: int | None = None) -> Code:
    return Code(format="QRCode", text=text, urls=urls_from_payload(text), frame=frame)


def test_url_origins_list_every_place_codes_first() -> None:
    codes = [_code("Hello"), _code("https://a-shop.org/x", frame=2), _code("URLTO:b-shop.com")]
    text = [
        _line("nothing here"),
        _line("see b-shop.com and c-shop.net", frame=1),
        _line("A-SHOP.ORG/x again"),
    ]
    origins = url_origins(codes, text)
    assert origins == [
        UrlOrigin(url="https://a-shop.org/x", source="codes", index=1, frame=2),
        UrlOrigin(url="http://b-shop.com/", source="codes", index=2),
        UrlOrigin(url="http://b-shop.com/", source="text", index=1, frame=1),
        UrlOrigin(url="http://c-shop.net/", source="text", index=1, frame=1),
        UrlOrigin(url="http://a-shop.org/x", source="text", index=2),
    ]
    # each origin points at a code or line that carries its URL
    for o in origins:
        found = codes[o.index].urls if o.source == "codes" else extract_urls(text[o.index].text)
        assert o.url in found
    assert distinct_urls(origins) == [
        "https://a-shop.org/x",
        "http://b-shop.com/",
        "http://c-shop.net/",
        "http://a-shop.org/x",
    ]
    assert distinct_urls(origins, ["codes"]) == ["https://a-shop.org/x", "http://b-shop.com/"]
    assert distinct_urls(origins, ["text"]) == [
        "http://b-shop.com/",
        "http://c-shop.net/",
        "http://a-shop.org/x",
    ]


def test_url_origins_of_nothing() -> None:
    assert url_origins([], []) == []
    assert url_origins([_code("5901234123457")], [_line("3.50 e.g. photo.jpg")]) == []
    assert distinct_urls([]) == []
