"""The live-stream rules engine: validation with positions, channel resolution, tiers,
evaluation on real moderation results, storage on SQLite and PostgreSQL, and live reload."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import BastionError
from bastion.pipeline.moderation import Moderation
from bastion.policy.loader import default_policy
from bastion.policy.model import Lists
from bastion.results import ModerationResult
from bastion.rules import (
    RuleBook,
    RulesError,
    RuleSetConflict,
    choose,
    compile_rule_set,
    dump_rules_yaml,
    evaluate,
    explain,
    load_rules_yaml,
)
from bastion.rules.checks import Capabilities, feasibility_issues
from bastion.rules.loader import parse_document, parse_rule_set, spec_version
from bastion.rules.regex import RegexRefused, compile_regex
from bastion.rules.repo import RuleStore
from bastion.rules.spec import MAX_RULE_SETS, RuleSetSpec
from bastion.rules.tables import RuleSetRow
from bastion.store.repo import Repo
from bastion.store.tables import Base
from tests.support.databases import database
from tests.support.hostile import catastrophic_regexes
from tests.support.media import photo, qr_on_photo, text_on_photo
from tests.support.rules import BLOCKED_DOMAIN, BLOCKED_WORD, STREAM_RULES


def errors_of(text: str, *, fmt: str = "yaml", document: bool = False) -> list[dict[str, Any]]:
    with pytest.raises(RulesError) as info:
        if document:
            parse_document(text, fmt="json" if fmt == "json" else "yaml")
        else:
            parse_rule_set(text, fmt="json" if fmt == "json" else "yaml")
    assert info.value.code == "invalid_rules" and info.value.status == 422
    errors: list[dict[str, Any]] = info.value.details["errors"]
    return errors


def test_a_list_over_its_bound_is_refused_before_its_items_are_checked() -> None:
    """Thousands of bad rules give one 'too long' error, found without validating them
    (validating first held the interpreter for tens of milliseconds)."""
    rules = "".join(f"  - {{name: r{i}, text: {{words: 7}}}}\n" for i in range(5_000))
    errors = errors_of(f"name: many\nchannel: a\nrules:\n{rules}")
    assert [e["path"] for e in errors] == ["rules"]
    assert "at most 500" in errors[0]["message"] and "5000" in errors[0]["message"]
    words = ", ".join(["x"] * 1_001)
    errors = errors_of(
        f"name: w\nchannel: a\nrules:\n  - {{name: r, text: {{words: [{words}]}}}}\n"
    )
    assert [e["path"] for e in errors] == ["rules.0.text.words"]


def by_path(errors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in errors}


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``text``."""
    index = text.index(needle)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def rule_set(body: str, name: str = "rs", where: str = 'channel_pattern: ".*"') -> str:
    return f"name: {name}\n{where}\nrules:\n{body}"


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "char"),
    [
        ("'(?P<code>\\d+'", "("),  # single-quoted: unterminated group
        ("win(\\d+", "("),  # plain scalar
        ('"a[b"', "["),  # double-quoted without escapes: unterminated set
    ],
)
def test_bad_regex_points_at_the_character(written: str, char: str) -> None:
    text = rule_set(f"  - name: promo\n    text:\n      regex: [ok, {written}]\n")
    errors = errors_of(text)
    assert len(errors) == 1, errors
    err = errors[0]
    assert err["path"] == "rules.0.text.regex.1"
    quote = 1 if written[0] in "'\"" else 0
    value = written[quote : len(written) - quote]
    with pytest.raises(re.error) as real:
        re.compile(value)
    pos = real.value.pos
    assert pos is not None and value[pos] == char
    line, col = position(text, written)
    assert (err["line"], err["column"]) == (line, col + quote + pos)
    assert text.splitlines()[line - 1][err["column"] - 1] == char
    assert f"position {pos}" in err["message"]


def test_bad_channel_pattern_and_escaped_regex_are_located() -> None:
    text = 'name: g\nchannel_pattern: "^(live-\\\\d+"\nrules:\n  - name: r\n    text: {}\n'
    err = errors_of(text)[0]
    assert err["path"] == "channel_pattern"
    # written with escapes: the error points at the value's start, the message at the spot
    assert (err["line"], err["column"]) == (2, 18)
    assert "position 1" in err["message"] and "missing )" in err["message"]


def test_unknown_category_suggests_close_names() -> None:
    text = rule_set(
        "  - name: r\n    categories: [Explict Nudity, weapons, Nonsense Thing]\n"
        "    min_confidence: 60\n"
    )
    errors = by_path(errors_of(text))
    first = errors["rules.0.categories.0"]
    assert "'Explicit Nudity'" in first["message"] and "did you mean" in first["message"]
    assert (first["line"], first["column"]) == position(text, "Explict")
    assert "'Weapons'" in errors["rules.0.categories.1"]["message"]
    third = errors["rules.0.categories.2"]["message"]
    assert "unknown category 'Nonsense Thing'" in third and "Explicit Nudity" in third


def test_impossible_thresholds_and_intervals() -> None:
    text = (
        "name: g\nchannel_pattern: '.*'\nsample_interval_s: 0\ntiers: {trusted: 0, new: -1}\n"
        "rules:\n  - name: a\n    categories: [Weapons]\n    min_confidence: 101\n"
        "  - name: b\n    categories: [Weapons]\n    min_confidence: -5\n"
    )
    errors = by_path(errors_of(text))
    assert set(errors) == {
        "sample_interval_s",
        "tiers.trusted",
        "tiers.new",
        "rules.0.min_confidence",
        "rules.1.min_confidence",
    }
    assert (
        errors["sample_interval_s"]["line"] == 3
        and "greater than 0" in (errors["sample_interval_s"]["message"])
    )
    assert errors["rules.0.min_confidence"]["line"] == 8
    assert "100" in errors["rules.0.min_confidence"]["message"]
    assert errors["rules.1.min_confidence"]["line"] == 11


def test_rules_that_could_never_fire_are_refused() -> None:
    text = (
        "name: g\nchannel_pattern: '.*'\nignore_similar: {enabled: true, hash: dhash, "
        "threshold: 64}\nrules:\n"
        "  - name: no-conditions\n"
        "  - name: threshold-without-categories\n    min_confidence: 90\n    text: {}\n"
    )
    errors = by_path(errors_of(text))
    assert "fire on every frame" in errors["rules.0"]["message"]
    assert errors["rules.0"]["line"] == 5
    assert "never be used" in errors["rules.1.min_confidence"]["message"]
    assert errors["rules.1.min_confidence"]["line"] == 7
    assert "64 bits" in errors["ignore_similar.threshold"]["message"]
    err = errors_of(rule_set("  - name: off\n    text: {}\n"))[0]
    assert err["path"] == "rules.0.name" and "write 'off'" in err["message"]
    disabled = rule_set("  - name: paused\n    enabled: false\n    text: {}\n")
    assert "could never fire" in errors_of(disabled)[0]["message"]


def test_rules_the_policy_cannot_serve_are_found() -> None:
    spec = parse_rule_set(
        rule_set(
            "  - name: hate\n    categories: [Hate Symbols]\n"
            "  - name: nudity\n    categories: [Exposed Male Genitalia, Hate Symbols]\n"
            "  - name: words\n    text: {words: [x]}\n"
            "  - name: qr\n    urls: {sources: [codes]}\n"
        )
    ).value
    caps = Capabilities(
        policy="nsfw-only",
        categories=frozenset({"Explicit Nudity", "Exposed Male Genitalia"}),
        emits=frozenset({"labels"}),
    )
    issues = {".".join(map(str, i.path)): i.message for i in feasibility_issues(spec.rules, caps)}
    assert set(issues) == {"rules.0.categories", "rules.2.text", "rules.3.urls"}
    assert "can never fire" in issues["rules.0.categories"]
    assert "Hate Symbols" in issues["rules.0.categories"]
    with_ocr = Capabilities("p", caps.categories, frozenset({"labels", "text", "codes"}))
    assert {".".join(map(str, i.path)) for i in feasibility_issues(spec.rules, with_ocr)} == {
        "rules.0.categories"
    }


def test_duplicate_names_and_channels_are_located() -> None:
    rules = rule_set("  - name: a\n    text: {}\n  - name: a\n    urls: {}\n")
    err = errors_of(rules)[0]
    assert err["path"] == "rules.1.name" and "used twice" in err["message"]
    assert err["line"] == 6
    doc = (
        "rule_sets:\n"
        "  - {name: one, channel: alice, rules: [{name: r, text: {}}]}\n"
        "  - {name: two, channel: alice, rules: [{name: r, text: {}}]}\n"
        "  - {name: one, channel_pattern: x, rules: [{name: r, text: {}}]}\n"
    )
    errors = by_path(errors_of(doc, document=True))
    assert errors["rule_sets.1.channel"]["line"] == 3
    assert errors["rule_sets.2.name"]["line"] == 4
    both = rule_set(
        "  - name: r\n    text: {}\n", where="channel: a\nchannel_pattern: b\npriority: 3"
    )
    paths = {e["path"] for e in errors_of(both)}
    assert paths == {"channel_pattern", "priority"}


def test_syntax_errors_duplicate_keys_and_shapes_have_positions() -> None:
    err = errors_of("name: x\nrules: [\n  {name: a\n")[0]
    assert err["message"].startswith("YAML syntax") and err["line"] >= 3
    err = errors_of('{"name": "x",\n  "rules": [}', fmt="json")[0]
    assert err["message"].startswith("JSON syntax") and err["line"] == 2
    err = errors_of("name: x\nchannel: a\nname: y\nrules: []\n")[0]
    assert err["path"] == "name" and "given twice" in err["message"] and err["line"] == 3
    assert errors_of("- 1\n")[0]["message"] == "a rule set must be a mapping"
    err = by_path(errors_of("name: x\nchannel: a\nrulez: []\n"))
    assert err["rulez"]["message"] == "unknown field 'rulez'" and err["rulez"]["line"] == 3
    assert err["rules"]["message"] == "missing required field 'rules'"
    alias = "name: x\nchannel: a\nrules:\n  - &r {name: a, text: {}}\n  - *r\n"
    assert "aliases" in errors_of(alias)[0]["message"]


def test_json_rule_set_errors_are_located() -> None:
    text = (
        '{\n  "name": "j",\n  "channel": "c",\n  "rules": [{"name": "r", "min_confidence": 7}]\n}'
    )
    errors = by_path(errors_of(text, fmt="json"))
    assert errors["rules.0.min_confidence"]["line"] == 4
    assert errors["rules.0"]["line"] == 4


def test_yaml_round_trip_keeps_every_rule_set() -> None:
    doc = (
        "rule_sets:\n  - " + STREAM_RULES.replace("\n", "\n    ").rstrip() + "\n"
        "  - name: alice\n    channel: alice-live\n    policy: default\n"
        "    rules:\n      - {name: any-link, urls: {regex: 'bit\\.ly/'}, action: alert}\n"
    )
    specs = load_rules_yaml(doc)
    assert [s.name for s in specs] == ["live-default", "alice"]
    again = load_rules_yaml(dump_rules_yaml(specs))
    assert again == specs
    assert [spec_version(s) for s in again] == [spec_version(s) for s in specs]
    for s in specs:  # a full dump (defaults included) reads back the same
        assert RuleSetSpec.model_validate(s.model_dump(mode="json")) == s
    changed = specs[0].model_copy(update={"sample_interval_s": 11.0})
    assert spec_version(changed) != spec_version(specs[0])


# ---- resolution ----------------------------------------------------------------------


def compiled(*texts: str) -> list[Any]:
    return [compile_rule_set(parse_rule_set(t).value, i) for i, t in enumerate(texts, 1)]


RULE = "  - name: r\n    text: {}\n"


def test_channel_rules_override_globals_and_lowest_priority_wins() -> None:
    sets = compiled(
        rule_set(RULE, "all", 'channel_pattern: ".*"\npriority: 100'),
        rule_set(RULE, "tests", 'channel_pattern: "^test-"\npriority: 10'),
        rule_set(RULE, "tests-b", 'channel_pattern: "^test-b"\npriority: 10'),
        rule_set(RULE, "alice", "channel: test-alice"),
        rule_set(RULE, "paused", "channel: bob\nenabled: false"),
    )

    def chosen(channel: str) -> str | None:
        found = choose(sets, channel)
        return None if found is None else found.name

    assert chosen("music-42") == "all"
    assert chosen("test-42") == "tests"
    assert chosen("test-bx") == "tests"  # priority tie: the first name in order
    assert chosen("test-alice") == "alice"  # the channel's own, over every global
    assert chosen("bob") == "all"  # a disabled channel rule set falls back to globals
    assert choose(sets[1:3], "prod-1") is None


def test_tiers_scale_the_interval_and_similarity_switch() -> None:
    spec = parse_rule_set(
        rule_set(
            RULE,
            where='channel_pattern: ".*"\nsample_interval_s: 4\n'
            "tiers: {trusted: 3.0, standard: 1.0, new: 0.5}",
        )
    ).value
    rs = compile_rule_set(spec)
    assert rs.resolve("trusted").sample_interval_s == 12.0
    assert rs.resolve("standard").sample_interval_s == 4.0
    assert rs.resolve("new").sample_interval_s == 2.0
    unknown = rs.resolve("celebrity")
    assert unknown.sample_interval_s == 4.0 and unknown.tier_multiplier == 1.0
    assert rs.resolve().similarity_threshold is None  # ignore_similar off by default
    on = spec.model_copy(
        update={
            "ignore_similar": spec.ignore_similar.model_copy(
                update={"enabled": True, "hash": "dhash", "threshold": 6}
            )
        }
    )
    resolved = compile_rule_set(on).resolve()
    assert (resolved.similarity_threshold, resolved.similarity_hash) == (6, "dhash")


# ---- evaluation on real results ------------------------------------------------------


def stream_rules() -> RuleSetSpec:
    return parse_rule_set(STREAM_RULES).value


TENANT_LISTS = Lists(blocked_words=[BLOCKED_WORD], blocked_domains=[BLOCKED_DOMAIN])


async def moderate(
    moderation: Moderation, data: bytes, lists: Lists | None = None
) -> ModerationResult:
    return await moderation.moderate_bytes(data, default_policy(), extra_lists=lists)


@pytest.mark.models
async def test_qr_code_to_a_blocked_domain_stops_the_stream(moderation: Moderation) -> None:
    resolved = compile_rule_set(stream_rules()).resolve()
    result = await moderate(moderation, qr_on_photo(f"https://promo.{BLOCKED_DOMAIN}/win?id=3"))
    matches = evaluate(resolved, result, TENANT_LISTS)
    fired = {m.rule: m for m in matches}
    assert set(fired) == {"spam-domain", "qr-link", "tenant-lists"}, [m.reason for m in matches]
    assert matches[0].rule == "spam-domain" and matches[0].action == "auto_stop"
    assert matches[0].urls == [f"https://promo.{BLOCKED_DOMAIN}/win?id=3"]
    assert BLOCKED_DOMAIN in matches[0].reason
    assert fired["qr-link"].labels == [("QR Code Link", 100.0)]
    assert "blocked domain" in fired["tenant-lists"].reason
    # without the tenant's lists the lists rule cannot hold, the others still fire
    assert {m.rule for m in evaluate(resolved, result)} == {"spam-domain", "qr-link"}
    clean = await moderate(moderation, qr_on_photo("https://www.example.org/menu"))
    assert [m.rule for m in evaluate(resolved, clean, TENANT_LISTS)] == ["qr-link"]


@pytest.mark.models
async def test_rendered_blocked_word_stops_the_stream(moderation: Moderation) -> None:
    resolved = compile_rule_set(stream_rules()).resolve()
    result = await moderate(
        moderation, text_on_photo(f"Play at our {BLOCKED_WORD} and win $500 today"), TENANT_LISTS
    )
    matches = evaluate(resolved, result, TENANT_LISTS)
    fired = {m.rule: m for m in matches}
    assert set(fired) == {"casino-ad", "tenant-lists"}, [m.reason for m in matches]
    assert matches[0].rule == "casino-ad" and matches[0].action == "auto_stop"
    assert BLOCKED_WORD in fired["casino-ad"].text
    assert any(t.lower().startswith("win") for t in fired["casino-ad"].text)
    # the threshold is compared with the label as the engine reported it
    word = next(lab for lab in result.labels if lab.name == "Blocked Word")
    at = parse_rule_set(
        rule_set(
            f"  - name: w\n    categories: [Blocked Word]\n    min_confidence: {word.confidence}\n"
        )
    ).value
    above = at.model_copy(deep=True)
    above.rules[0].min_confidence = min(100.0, word.confidence + 0.01)
    assert [m.rule for m in evaluate(compile_rule_set(at).resolve(), result)] == ["w"]
    outcome = explain(compile_rule_set(above).resolve(), result)[0]
    assert not outcome.fired and "below" in outcome.reason
    assert outcome.conditions[0].labels[0].confidence == word.confidence


@pytest.mark.models
@pytest.mark.parametrize(
    "name", ["skimage-astronaut", "skimage-chelsea", "skimage-coffee", "sklearn-china"]
)
async def test_benign_photos_fire_no_rule(moderation: Moderation, name: str) -> None:
    resolved = compile_rule_set(stream_rules()).resolve()
    result = await moderate(moderation, photo(name), TENANT_LISTS)
    assert evaluate(resolved, result, TENANT_LISTS) == []
    outcomes = explain(resolved, result, TENANT_LISTS)
    assert len(outcomes) == len(resolved.rules) and not any(o.fired for o in outcomes)
    assert all(o.reason for o in outcomes)


# ---- storage and live reload (SQLite and PostgreSQL) ---------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[sessionmaker[Session], Repo]]:
    with database(request.param, tmp_path_factory.mktemp("rules")) as found:
        yield found


@pytest.fixture
def tenant(db: tuple[sessionmaker[Session], Repo]) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    db[1].ensure_tenant(tenant_id)
    return tenant_id


def spec(name: str, where: str, interval: float = 10) -> RuleSetSpec:
    return parse_rule_set(
        f"name: {name}\n{where}\nsample_interval_s: {interval}\nrules:\n{RULE}"
    ).value


def _rule_table_diffs(sessions: sessionmaker[Session], metadata: sa.MetaData) -> list[Any]:
    bind = sessions().get_bind()
    assert isinstance(bind, sa.Engine)
    with bind.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    return [d for d in diffs if "rule_" in repr(d)]


def test_migration_matches_the_models(db: tuple[sessionmaker[Session], Repo]) -> None:
    assert _rule_table_diffs(db[0], Base.metadata) == []
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["rule_sets"].append_column(sa.Column("extra", sa.Integer()))
    (diff,) = _rule_table_diffs(db[0], changed)
    assert diff[0] == "add_column" and diff[3].name == "extra"


def test_store_round_trip_revisions_and_conflicts(
    db: tuple[sessionmaker[Session], Repo], tenant: str
) -> None:
    store = RuleStore(db[0])
    assert store.revision(tenant) == 0 and store.rule_sets(tenant) == []
    a = store.create(tenant, spec("a", "channel: alice"))
    b = store.create(tenant, spec("b", "channel_pattern: '.*'"))
    assert store.revision(tenant) == 2
    assert store.get(tenant, a.id).spec == spec("a", "channel: alice")
    with pytest.raises(RuleSetConflict) as info:
        store.create(tenant, spec("a", "channel: carol"))
    assert info.value.status == 409 and info.value.details["errors"][0]["path"] == "name"
    with pytest.raises(RuleSetConflict) as info:
        store.update(tenant, b.id, spec("b", "channel: alice"))
    assert info.value.details["errors"][0]["path"] == "channel"
    updated = store.update(tenant, b.id, spec("b2", "channel_pattern: '^x'", 5))
    assert updated.id == b.id and updated.version != b.version
    store.delete(tenant, a.id)
    assert [s.name for s in store.rule_sets(tenant)] == ["b2"]
    assert store.revision(tenant) >= 4
    other = f"{tenant}-other"
    db[1].ensure_tenant(other)
    with pytest.raises(Exception, match="not found"):
        store.get(other, b.id)  # another tenant's id is not found


def test_import_replace_and_merge_are_all_or_nothing(
    db: tuple[sessionmaker[Session], Repo], tenant: str
) -> None:
    store = RuleStore(db[0])
    store.create(tenant, spec("keep", "channel: bob"))
    store.create(tenant, spec("old", "channel_pattern: '.*'"))
    merged = store.import_rule_sets(
        tenant,
        [spec("old", "channel_pattern: '.*'", 30), spec("new", "channel: eve")],
        mode="merge",
    )
    assert (merged.created, merged.updated, merged.deleted) == (["new"], ["old"], [])
    assert {s.name for s in store.rule_sets(tenant)} == {"keep", "old", "new"}
    before = [(s.name, s.version) for s in store.rule_sets(tenant)]
    with pytest.raises(RuleSetConflict) as info:  # 'bob' belongs to 'keep', which merge keeps
        store.import_rule_sets(
            tenant, [spec("x", "channel: zed"), spec("y", "channel: bob")], mode="merge"
        )
    assert info.value.details["errors"][0]["path"] == "rule_sets.1.channel"
    assert [(s.name, s.version) for s in store.rule_sets(tenant)] == before
    replaced = store.import_rule_sets(tenant, [spec("y", "channel: bob")], mode="replace")
    assert replaced.created == ["y"] and sorted(replaced.deleted) == ["keep", "new", "old"]
    assert [s.name for s in store.rule_sets(tenant)] == ["y"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rule_book_notices_changes_without_restart(
    db: tuple[sessionmaker[Session], Repo], tenant: str
) -> None:
    sessions = db[0]
    clock = FakeClock()
    book = RuleBook(sessions, refresh_s=2.0, clock=clock)
    writer = RuleStore(sessions)  # another process editing through the API
    assert book.resolve(tenant, "test-1") is None
    g = writer.create(tenant, spec("g", "channel_pattern: '^test-'", 8))
    assert book.resolve(tenant, "test-1") is None  # cached until the next check
    clock.now += 2.1
    first = book.resolve(tenant, "test-1", tier="new")
    assert first is not None and (first.name, first.sample_interval_s) == ("g", 4.0)
    compiled_before = book.rule_sets(tenant)[0]
    writer.create(tenant, spec("alice", "channel: test-1", 20))
    clock.now += 0.5
    assert book.resolve(tenant, "test-1").name == "g"  # type: ignore[union-attr]
    book.invalidate(tenant)  # what the API does on save: no wait
    assert book.resolve(tenant, "test-1").name == "alice"  # type: ignore[union-attr]
    assert book.rule_sets(tenant)[0] is compiled_before  # unchanged: not compiled again
    writer.update(tenant, g.id, spec("g", "channel_pattern: '^test-'", 9))
    clock.now += 2.1
    assert book.resolve(tenant, "test-2").sample_interval_s == 9.0  # type: ignore[union-attr]


def test_rule_book_reloads_within_seconds_and_uses_fallback(
    db: tuple[sessionmaker[Session], Repo], tenant: str
) -> None:
    fallback = load_rules_yaml(
        "rule_sets:\n  - name: config-default\n    channel_pattern: '.*'\n"
        "    sample_interval_s: 60\n    rules: [{name: r, text: {}}]\n"
    )
    book = RuleBook(db[0], refresh_s=0.2, fallback=fallback)
    assert book.resolve(tenant, "any").name == "config-default"  # type: ignore[union-attr]
    RuleStore(db[0]).create(tenant, spec("own", "channel_pattern: '^any$'", 3))
    deadline = time.monotonic() + 5
    while (found := book.resolve(tenant, "any")) is not None and found.name != "own":
        assert time.monotonic() < deadline, "change not seen within 5 s"
        time.sleep(0.05)
    assert book.resolve(tenant, "other").name == "config-default"  # type: ignore[union-attr]


# ---- regular expressions: linear time, Python's meaning -------------------------------------

MEANING_PATTERNS = [
    r"win\s+\$?\d+",
    r"\w+",
    r"[\w.-]+@\w+",
    r"\d{3}",
    r"[^\W\d]+",
    r"[^\W_]+",
    r"[\W]",
    r"[^\S]",
    r"[\s\d]+",
    r"[\W\d]+",
    r"\S+\Z",
    r"caf\u00e9",
    r"\N{EM DASH}",
    r"a{,3}b",
    r"[]a]+",
    r"[a^]+",
    r"\D+",
    r"ÉCOLE",
    r"bit\.ly/",
    r"^test-",
    r"\x41\101",
]
MEANING_SUBJECTS = [
    "win  $500 now",
    "Best casino in town",
    "カジノ ３５ and café—x",
    "ab@cd.ef",
    "١٢٣ digits",
    "école",
    "\x1c\u3000\v",
    "aaab",
    "]]a]x^",
    "bit.ly/x",
    "test-1",
    "AA",
    "snake_case_9",
]


@pytest.mark.parametrize("ignore_case", [False, True])
@pytest.mark.parametrize("pattern", MEANING_PATTERNS)
def test_regexes_keep_their_python_meaning(pattern: str, ignore_case: bool) -> None:
    """RE2 runs them, with the meaning Python's ``re`` gives them (Unicode \\w, \\d, \\s)."""
    compiled = compile_regex(pattern, ignore_case=ignore_case)
    python = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    for subject in MEANING_SUBJECTS:
        found = python.search(subject)
        assert compiled.search(subject) == (found.group(0) if found else None), subject


def test_random_regexes_keep_their_python_meaning() -> None:
    rng = random.Random(7)
    atoms = [r"a", r"b", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", r".", r"[ab]", r"[^a]"]
    atoms += [r"[\w.]", r"[\W\d]", r"[^\W\d]", r"é", r"\u00e9", r"[а-я]", r"\.", r"カ", r"\t"]
    quantifiers = ["", "", "*", "+", "?", "{2}", "{1,3}", "{,2}", "*?", "+?"]
    chars = "ab é\t.-カ١٢3A_аб\u3000x]^["
    checked = 0
    for _ in range(400):
        pattern = "".join(
            rng.choice(atoms) + rng.choice(quantifiers) for _ in range(rng.randint(1, 4))
        )
        ignore_case = rng.random() < 0.5
        compiled = compile_regex(pattern, ignore_case=ignore_case)
        python = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        for _ in range(8):
            subject = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
            found = python.search(subject)
            expected = found.group(0) if found else None
            assert compiled.search(subject) == expected, (pattern, ignore_case, subject)
            checked += 1
    assert checked == 3200


@pytest.mark.parametrize(
    ("pattern", "kind", "position"),
    [
        (r"(a)\1", "regex_unsupported", 3),
        (r"x(?=y)", "regex_unsupported", 1),
        (r"(?<=x)y", "regex_unsupported", 0),
        (r"(?P<n>a)-(?P=n)", "regex_unsupported", 9),
        (r"(?(1)a|b)", "bad_regex", 3),
        (r"(?x) a b", "regex_unsupported", 0),
        (r"a{1001}", "regex_unsupported", 1),
        (r"[^\W\s]", "regex_unsupported", 0),
        (r"\w{100}", "regex_too_large", 0),
        ("a" * 1001, "regex_too_large", 1000),
        (r"(unclosed", "bad_regex", 0),
    ],
)
def test_regexes_re2_cannot_run_are_refused(pattern: str, kind: str, position: int) -> None:
    with pytest.raises(RegexRefused) as info:
        compile_regex(pattern, ignore_case=True)
    assert (info.value.kind, info.value.position) == (kind, position), info.value.message


def test_catastrophic_regexes_take_linear_time() -> None:
    for pattern, subject in catastrophic_regexes():
        compiled = compile_regex(pattern, ignore_case=True)
        started = time.perf_counter()
        for k in (1, 10, 100):
            assert compiled.search(subject * k) is None or pattern.startswith("(x")
        assert time.perf_counter() - started < 0.1, pattern


def test_rule_set_limits_are_refused_with_positions() -> None:
    rules = "".join(f"  - {{name: r{i}, text: {{}}}}\n" for i in range(501))
    err = errors_of(rule_set(rules))[0]
    assert err["path"] == "rules" and "at most 500" in err["message"]
    regexes = ", ".join(f"'x{i}'" for i in range(21))
    err = errors_of(rule_set(f"  - name: r\n    text: {{regex: [{regexes}]}}\n"))[0]
    assert err["path"] == "rules.0.text.regex" and err["line"] == 5
    many = "".join(f"  - {{name: r{i}, urls: {{regex: ['a{i}', 'b{i}']}}}}\n" for i in range(101))
    err = errors_of(rule_set(many))[0]
    # the 201st: the channel pattern counts too
    assert err["path"] == "rules.99.urls.regex.1" and err["code"] == "regex_too_large"


def test_stored_rule_sets_that_no_longer_validate_are_left_out(
    db: tuple[sessionmaker[Session], Repo], tenant: str
) -> None:
    store = RuleStore(db[0])
    good = store.create(tenant, spec("good", "channel_pattern: '^live-'"))
    old = store.create(tenant, spec("old", "channel_pattern: '.*'", 5))
    with db[0].begin() as s:  # as saved before lookarounds were refused
        row = s.get(RuleSetRow, old.id)
        assert row is not None
        row.spec = {**row.spec, "channel_pattern": "^(?!test-)"}
    assert [r.name for r in store.rule_sets(tenant)] == ["good"]
    book = RuleBook(db[0])
    assert book.resolve(tenant, "live-1").name == "good"  # type: ignore[union-attr]
    assert book.resolve(tenant, "other") is None
    with pytest.raises(BastionError) as info:
        store.get(tenant, old.id)
    assert (info.value.code, info.value.status) == ("rule_set_outdated", 409)
    repaired = store.update(tenant, old.id, spec("old", "channel_pattern: '^other'"))
    assert store.get(tenant, repaired.id).spec.channel_pattern == "^other"
    assert good.id != old.id


def test_a_tenant_keeps_a_bounded_number_of_rule_sets(
    db: tuple[sessionmaker[Session], Repo], tenant: str
) -> None:
    store = RuleStore(db[0])
    specs = [spec(f"r{i}", f"channel: c{i}") for i in range(MAX_RULE_SETS)]
    store.import_rule_sets(tenant, specs, mode="replace")
    with pytest.raises(BastionError) as info:
        store.create(tenant, spec("one-more", "channel: more"))
    assert (info.value.code, info.value.status) == ("too_many_rule_sets", 409)
    with pytest.raises(BastionError):
        store.import_rule_sets(tenant, [spec("x", "channel: x")], mode="merge")
    assert len(store.rule_sets(tenant)) == MAX_RULE_SETS
