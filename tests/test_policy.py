"""Policies: YAML validation with line numbers, decisions, word/domain lists."""

from __future__ import annotations

import time

import pytest

from bastion.errors import PolicyError
from bastion.policy import taxonomy
from bastion.policy.decide import decide
from bastion.policy.lists import CompiledLists
from bastion.policy.loader import default_policy, dump_policy, parse_policy
from bastion.policy.model import MAX_LIST_ENTRIES, Lists
from bastion.results import Code, Label, TextLine


def lab(name: str, conf: float) -> Label:
    return taxonomy.label(name, conf, analyzer="t", model="m", version="1")


def test_default_policy_loads_and_round_trips() -> None:
    p = default_policy()
    assert p.name == "default" and "nsfw" in p.analyzers
    again = parse_policy(dump_policy(p))
    assert again.version == p.version


def test_version_changes_with_content() -> None:
    a = parse_policy("name: a\nanalyzers: [nsfw]\nrules: [{categories: [Weapons], review: 50}]\n")
    b = parse_policy("name: a\nanalyzers: [nsfw]\nrules: [{categories: [Weapons], review: 51}]\n")
    assert a.version != b.version


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (
            "name: p\nanalyzers: [nsfw]\nrules:\n  - categories: [Weapons]\n    review: 150\n",
            5,
            "less than or equal to 100",
        ),
        (
            "name: p\nanalyzers: [nsfw]\nrules:\n  - categories: [Nope]\n    review: 50\n",
            4,
            "unknown category 'Nope'",
        ),
        (
            "name: p\nanalyzers: [nsfw]\nrules:\n  - categories: [Weapons]\n    review: 90\n"
            "    block: 50\n",
            4,
            "could never fire",
        ),
        ("name: p\nanalyzers: [nsfw]\nbogus: 1\n", 3, "Extra inputs"),
        ("name: p\nanalyzers: [nsfw\n", 3, "YAML syntax"),
        ("name: p\nanalyzers: []\n", 2, "at least 1"),
        ("- just\n- a list\n", 1, "mapping"),
    ],
)
def test_errors_name_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    errors = info.value.details["errors"]
    assert errors[0]["line"] == line, errors
    assert needle in info.value.message, info.value.message
    assert info.value.code == "invalid_policy"


def test_decide_takes_the_strictest_action_and_explains() -> None:
    p = default_policy()
    decision, reasons = decide(p, [lab("Exposed Female Nipple", 90), lab("Firearms", 65)])
    assert decision == "block"
    assert [r.action for r in reasons] == ["block", "review"]
    assert reasons[0].rule == "explicit-nudity" and reasons[0].label == "Exposed Female Nipple"
    assert decide(p, [lab("Firearms", 65)])[0] == "review"
    assert decide(p, [lab("Firearms", 10), lab("Corpses", 20)]) == ("allow", [])


def test_l1_rule_covers_l2_labels_and_star_covers_all() -> None:
    p = parse_policy("name: p\nanalyzers: [x]\nrules: [{categories: ['*'], block: 99}]\n")
    assert decide(p, [lab("Gambling Equipment", 99.5)])[0] == "block"


def test_lists_match_words_and_domains() -> None:
    lists = CompiledLists(
        Lists(
            blocked_words=["casino", "割引", "viagra"],
            blocked_domains=["spam.example"],
            allowed_domains=["ok.spam.example"],
        ),
        "v1",
    )
    text = [
        TextLine(text="Best CASINO bonus", confidence=90, engine="t"),
        TextLine(text="今だけ 割 引 セール", confidence=80, engine="t"),
        TextLine(text="casinos are fine as a different word", confidence=90, engine="t"),
    ]
    codes = [
        Code(format="QRCode", text="https://x.spam.example/a", urls=["https://x.spam.example/a"])
    ]
    labels = lists.labels(
        text,
        codes,
        ["https://x.spam.example/a", "https://ok.spam.example/", "https://example.org/"],
    )
    names = sorted((lab.name, lab.source) for lab in labels)
    assert ("Blocked Word", "text:casino") in names
    assert ("Blocked Word", "text:割引") in names
    assert ("Blocked Domain", "url:https://x.spam.example/a") in names
    assert not any("ok.spam" in (s or "") or "example.org" in (s or "") for _, s in names)
    assert len([n for n in names if n[1] == "text:casino"]) == 1
    assert all(lab.parent == "Illegal Ads" for lab in labels)


def test_lists_merge_without_duplicates() -> None:
    a = Lists(blocked_words=["x", "y"])
    b = Lists(blocked_words=["y", "z"], blocked_domains=["d.example"])
    m = a.merged(b)
    assert m.blocked_words == ["x", "y", "z"] and m.blocked_domains == ["d.example"]


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("a0: &a0 [x]\na1: [*a0, *a0]\n", "yaml_alias", 2),
        ("name: !!python/object/apply:os.system ['id']\n", "yaml_tag", 1),
        ("name: p\nanalyzers: [nsfw]\x1a\n", "yaml_syntax", 2),
        ("name: p\nanalyzers: [nsfw]\nname: q\n", "yaml_duplicate_key", 3),
        ("name: p\n" + "x: [" * 40 + "\n", "yaml_too_deep", 2),
    ],
)
def test_hostile_yaml_is_an_invalid_policy_with_a_line(text: str, code: str, line: int) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    error = info.value.details["errors"][0]
    assert (info.value.code, error["code"], error["line"]) == ("invalid_policy", code, line)


def test_policy_documents_are_bounded() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("name: p\nanalyzers: [nsfw]\n" + "# pad\n" * 200_000)
    assert (info.value.code, info.value.status) == ("policy_too_large", 413)
    words = ", ".join(f"w{i}" for i in range(MAX_LIST_ENTRIES + 1))
    with pytest.raises(PolicyError) as info:
        parse_policy(f"name: p\nanalyzers: [ocr]\nlists: {{blocked_words: [{words}]}}\n")
    assert "at most 10000" in info.value.details["errors"][0]["message"]
    merged = Lists(blocked_words=["a"] * 2).merged(
        Lists(blocked_words=[f"w{i}" for i in range(9_999)])
    )
    assert len(merged.blocked_words) == 10_000  # the union of two bounded lists is not refused


def test_the_largest_lists_match_quickly_and_alike() -> None:
    words = [f"word{i}" for i in range(MAX_LIST_ENTRIES - 3)] + ["casino", "割引", "free money"]
    lists = CompiledLists(Lists(blocked_words=words), "big")
    text = "FREE money at the Casino, 割 引 today; casinos and freemoney are other words " * 20
    started = time.perf_counter()
    for _ in range(10):
        hits = lists.blocked_words(text)
    assert time.perf_counter() - started < 1.0
    assert hits == ["casino", "割引", "free money"]
