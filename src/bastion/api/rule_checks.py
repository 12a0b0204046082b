"""What the rules API (and the portal's rule editor) needs from the rest of Bastion: the
request body as rule text, whether a rule set's rules can fire under its analysis
policy, and saving or deleting a rule set once it is checked in full.

The body is read up to :data:`~bastion.rules.loader.MAX_RULES_BYTES` (413
``rules_too_large`` beyond, without reading the rest); bytes that are not UTF-8 are a
422 ``invalid_rules`` pointing at the line and column of the first bad byte."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from bastion.api.services import Services
from bastion.errors import EmptyInput, InputError, NotFound
from bastion.rules.checks import Capabilities, feasibility_issues
from bastion.rules.errors import Issue, Path, RulesError
from bastion.rules.loader import MAX_RULES_BYTES, Format, Parsed, parse_rule_set
from bastion.rules.repo import StoredRuleSet
from bastion.rules.spec import RuleSetSpec, RuleSpec

RULES_BODY = {
    "requestBody": {
        "description": "Rules as YAML (application/yaml, text/plain) or JSON (application/json).",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def sniff(text: str) -> Format:
    return "json" if text.lstrip().startswith("{") else "yaml"


def decode_rules(data: bytes, ctype: str | None = None) -> tuple[str, Format]:
    """Rule text from bytes; JSON by content type (or, with none, by its first brace)."""
    if not data.strip():
        raise EmptyInput("empty body: send rules as YAML or JSON")
    if len(data) > MAX_RULES_BYTES:
        raise InputError(
            f"rules are over the limit of {MAX_RULES_BYTES} bytes",
            code="rules_too_large",
            status=413,
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        issue = Issue(
            (), f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be read", code="invalid_encoding"
        )
        raise RulesError([issue], locate=lambda _: (line, column)) from None
    if ctype is None:
        return text, sniff(text)
    return text, "json" if ctype == "application/json" or ctype.endswith("+json") else "yaml"


async def rules_text(request: Request) -> tuple[str, Format]:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        raise InputError(
            "send rules as the body (YAML or JSON), not as a form",
            code="unsupported_media_type",
            status=415,
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_RULES_BYTES:
            break
    return decode_rules(bytes(body), ctype or None)


def capabilities(svc: Services, tenant_id: str, policy_name: str | None) -> Capabilities | None:
    """What the policy a rule set names (None: the tenant's default) can find; None
    when there is no such policy."""
    try:
        policy, _ = svc.policies.resolve(tenant_id, policy_name)
    except NotFound:
        return None
    infos = {info.name: info for info in svc.engine.infos()}
    emits: set[str] = set()
    for name in policy.analyzers:
        if name in infos:
            emits.update(infos[name].emits)
    return Capabilities(
        policy=policy.name,
        categories=frozenset(svc.engine.detectable(policy.analyzers)),
        emits=frozenset(emits),
    )


def feasibility(
    svc: Services,
    tenant_id: str,
    policy: str | None,
    rules: Sequence[RuleSpec],
    prefix: Path = (),
) -> list[Issue]:
    """Problems that would keep rules from ever firing under ``policy``."""
    caps = capabilities(svc, tenant_id, policy)
    if caps is None:
        what = repr(policy) if policy is not None else "the tenant's default policy"
        return [Issue((*prefix, "policy"), f"policy {what} not found")]
    return [issue.under(prefix) for issue in feasibility_issues(rules, caps)]


def rule_set_feasibility(
    svc: Services, tenant_id: str, spec: RuleSetSpec, prefix: Path = ()
) -> list[Issue]:
    return feasibility(svc, tenant_id, spec.policy, spec.rules, prefix)


def checked_rule_set(svc: Services, tenant_id: str, text: str, fmt: Format) -> Parsed[RuleSetSpec]:
    """One rule set parsed, validated and checked against its policy; a
    :class:`RulesError` lists every problem with its line and column. Saves nothing."""
    parsed = parse_rule_set(text, fmt=fmt)
    issues = rule_set_feasibility(svc, tenant_id, parsed.value)
    if issues:
        raise parsed.error(issues)
    return parsed


def save_rule_set(
    svc: Services, tenant_id: str, text: str, fmt: Format, rule_set_id: int | None = None
) -> StoredRuleSet:
    """Create (``rule_set_id`` None) or replace a rule set from its text, checked in full
    first (:func:`checked_rule_set`); conflicts point at their line too. The rule book
    reloads the tenant's rules at once. Blocking: call from a worker thread."""
    try:
        parsed = checked_rule_set(svc, tenant_id, text, fmt)
        with parsed.locating():
            if rule_set_id is None:
                return svc.rules.store.create(tenant_id, parsed.value)
            return svc.rules.store.update(tenant_id, rule_set_id, parsed.value)
    finally:
        svc.rules.invalidate(tenant_id)


def remove_rule_set(svc: Services, tenant_id: str, rule_set_id: int) -> StoredRuleSet:
    """Delete one of the tenant's rule sets; the rule book forgets it at once."""
    try:
        return svc.rules.store.delete(tenant_id, rule_set_id)
    finally:
        svc.rules.invalidate(tenant_id)
