"""POST /v1/rules/test: run a rule set on an image and show which rules fire and why.

The rule set is a stored one (``rule_set_id``), one given inline (``rules``: YAML or
JSON of one rule set, a multipart field), or the one a channel resolves to
(``channel``), for a streamer ``tier``. The image goes through the same engine, policy
and tenant lists a live frame would. The inline rule set is parsed, and the rules are
evaluated, in a worker thread; the rules' regular expressions run in linear time
(:mod:`bastion.rules.regex`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from bastion.api.auth import Reader
from bastion.api.inputs import MediaInput, declared_length, read_single
from bastion.api.params import MAX_RULE_SET_ID, RuleSetIdQuery, parse_id
from bastion.api.rule_checks import decode_rules, feasibility
from bastion.api.services import Services, services
from bastion.errors import BastionError, EmptyInput, InputError, MediaTooLarge, NotFound
from bastion.results import ModerationResult
from bastion.rules.compiled import ResolvedRules, compile_rule_set
from bastion.rules.errors import Issue
from bastion.rules.evaluate import RuleMatch, RuleOutcome, evaluate, explain
from bastion.rules.loader import MAX_RULES_BYTES, parse_rule_set
from bastion.rules.spec import Action

router = APIRouter(prefix="/rules", tags=["rules"])
Svc = Annotated[Services, Depends(services)]
_TIER = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")
MAX_CHANNEL = 256

_TEST_BODY = {
    "requestBody": {
        "description": "A multipart form: the image as `file`, and optionally `rules` (one "
        "rule set as YAML or JSON), `rule_set_id`, `channel`, `tier`; or the image as the "
        "raw body or JSON url/base64, with the rule set chosen by the query.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "rules": {"type": "string"},
                        "rule_set_id": {"type": "integer"},
                        "channel": {"type": "string"},
                        "tier": {"type": "string"},
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class ResolvedOut(BaseModel):
    id: int | None = Field(description="Stored rule set id; null for one given inline.")
    name: str = Field(description="Rule set name.")
    version: str = Field(description="Hash of the rule set's content.")
    scope: str = Field(description="'channel' or 'global'.")
    tier: str = Field(description="The streamer tier the interval is scaled for.")
    tier_multiplier: float = Field(description="The tier's factor on the interval.")
    sample_interval_s: float = Field(description="Seconds between frames for this tier.")
    similarity_threshold: int | None = Field(description="Bits; null: similar frames kept.")
    similarity_hash: str = Field(description="'pdq' or 'dhash'.")
    policy: str = Field(description="The analysis policy the image was moderated with.")

    @classmethod
    def of(cls, r: ResolvedRules, policy: str) -> ResolvedOut:
        return cls(
            id=r.rule_set_id,
            name=r.name,
            version=r.version,
            scope=r.scope,
            tier=r.tier,
            tier_multiplier=r.tier_multiplier,
            sample_interval_s=r.sample_interval_s,
            similarity_threshold=r.similarity_threshold,
            similarity_hash=r.similarity_hash,
            policy=policy,
        )


class RuleTestOut(BaseModel):
    rule_set: ResolvedOut = Field(description="The rule set evaluated.")
    action: Action | None = Field(
        description="The strongest action of the rules that fired (`auto_stop`, then "
        "`review`, then `alert`); null when none fired."
    )
    matches: list[RuleMatch] = Field(description="Rules that fired, strongest action first.")
    fired: list[RuleOutcome] = Field(description="Rules that fired, every condition shown.")
    not_fired: list[RuleOutcome] = Field(description="Rules that did not fire, and why.")
    warnings: list[str] = Field(
        description="Rules that can never fire under the policy used (no analyzer for them)."
    )
    result: ModerationResult = Field(description="The image's moderation result.")


@dataclass
class _Choice:
    """Which rule set to evaluate, from the query and the form; and the form's image."""

    rule_set_id: int | None = None
    channel: str | None = None
    tier: str = "standard"
    rules: bytes | None = None
    multipart: bool = False
    item: MediaInput | None = None


async def _read_form(request: Request, choice: _Choice, max_bytes: int) -> None:
    """The form's fields into ``choice`` and its ``file`` (at most ``max_bytes``), read
    once: the body cannot be read a second time."""
    choice.multipart = True
    form = await request.form(max_files=1, max_fields=8, max_part_size=MAX_RULES_BYTES + 1)
    try:
        for key in ("rule_set_id", "channel", "tier", "rules"):
            value = form.get(key)
            if not isinstance(value, str) or not value:
                continue
            if key == "rule_set_id":
                choice.rule_set_id = parse_id(value, "rule_set_id", MAX_RULE_SET_ID)
            elif key == "channel" and len(value) > MAX_CHANNEL:
                raise InputError(
                    f"channel is longer than {MAX_CHANNEL} characters", code="invalid_channel"
                )
            elif key == "rules":
                choice.rules = value.encode()
            else:
                setattr(choice, key, value)
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            data = await upload.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise MediaTooLarge(
                    f"upload is over the limit of {max_bytes} bytes",
                    details={"max_bytes": max_bytes},
                )
            choice.item = MediaInput(data, upload.content_type, None, "upload")
    finally:
        await form.close()


async def _choice(
    request: Request, rule_set_id: int | None, channel: str | None, tier: str, max_bytes: int
) -> _Choice:
    choice = _Choice(rule_set_id=rule_set_id, channel=channel, tier=tier)
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        await _read_form(request, choice, max_bytes)
    given = [n for n in ("rule_set_id", "channel", "rules") if getattr(choice, n) is not None]
    if len(given) != 1:
        raise InputError(
            "give exactly one of 'rule_set_id', 'channel' or 'rules' (an inline rule set)"
            + (f"; got {', '.join(given)}" if given else ""),
        )
    if not _TIER.match(choice.tier):
        raise InputError(f"tier {choice.tier!r} is not a tier name (a-z, 0-9, '_', '-')")
    return choice


def _stored_frame(svc: Services, tenant_id: str, alert_id: str) -> MediaInput:
    """The frame an alert stored (its thumbnail), as the image to test on."""
    alert = svc.alerts.get(tenant_id, alert_id)
    if alert.thumbnail is None:
        raise NotFound(f"alert {alert_id!r} has no stored frame", code="thumbnail_not_found")
    path = svc.live_thumbnails.path(alert.stream_pk, alert.thumbnail)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise BastionError(
            f"the frame of alert {alert_id!r} was deleted after the retention period",
            code="thumbnail_expired",
            status=410,
        ) from exc
    return MediaInput(data, "image/jpeg", None, "alert")


def _resolve(svc: Services, tenant_id: str, choice: _Choice) -> ResolvedRules:
    if choice.rule_set_id is not None:
        stored = svc.rules.store.get(tenant_id, choice.rule_set_id)
        return compile_rule_set(stored.spec, stored.id).resolve(choice.tier)
    if choice.rules is not None:
        text, fmt = decode_rules(choice.rules)
        return compile_rule_set(parse_rule_set(text, fmt=fmt).value).resolve(choice.tier)
    channel = choice.channel or ""
    resolved = svc.rules.resolve(tenant_id, channel, choice.tier)
    if resolved is None:
        raise NotFound(f"no rule set applies to channel {channel!r}", code="no_rule_set")
    return resolved


async def run_rule_test(
    request: Request,
    svc: Services,
    tenant_id: str,
    *,
    rule_set_id: int | None = None,
    channel: str | None = None,
    tier: str = "standard",
    alert_id: str | None = None,
) -> RuleTestOut:
    """Evaluate the rule set the request chooses on its image, for ``tenant_id``: what
    ``POST /v1/rules/test`` answers (the portal's rule editor calls it too)."""
    svc.admission.check()  # a full server refuses before reading the body
    # the body is read before a slot is taken: a slow sender holds no slot
    async with svc.admission.memory.hold(declared_length(request)) as held:
        choice = await _choice(request, rule_set_id, channel, tier, svc.settings.limits.max_bytes)
        resolved = await run_in_threadpool(_resolve, svc, tenant_id, choice)
        if alert_id is not None:
            item = await run_in_threadpool(_stored_frame, svc, tenant_id, alert_id)
        elif choice.item is not None:
            item = choice.item
        elif choice.multipart:
            raise EmptyInput("multipart body has no file part (send it as 'file')")
        else:
            item = await read_single(request, svc.settings, None, held=held)
        async with svc.admission.slot():
            policy, lists = await run_in_threadpool(
                svc.policies.resolve, tenant_id, resolved.policy
            )
            async with svc.inflight:
                result = await svc.moderation.moderate_bytes(
                    item.data,
                    policy,
                    tenant=tenant_id,
                    extra_lists=lists,
                    content_type=item.content_type,
                )

    def judge() -> tuple[list[RuleOutcome], list[RuleMatch], list[Issue]]:
        compiled = svc.engine.compiled_lists(policy.lists.merged(lists))
        outcomes = explain(resolved, result, compiled)
        matches = evaluate(resolved, result, compiled)
        rules = [r.spec for r in resolved.rules]
        return outcomes, matches, feasibility(svc, tenant_id, resolved.policy, rules)

    outcomes, matches, issues = await run_in_threadpool(judge)
    return RuleTestOut(
        rule_set=ResolvedOut.of(resolved, policy.name),
        action=matches[0].action if matches else None,
        matches=matches,
        fired=[o for o in outcomes if o.fired],
        not_fired=[o for o in outcomes if not o.fired],
        warnings=[i.message for i in issues],
        result=result,
    )


@router.post(
    "/test",
    response_model=RuleTestOut,
    openapi_extra=_TEST_BODY,
    summary="Evaluate a rule set on an image: which rules fire, which do not, and why",
)
async def evaluate_rules_on_image(
    request: Request,
    who: Reader,
    svc: Svc,
    rule_set_id: RuleSetIdQuery = None,
    channel: Annotated[
        str | None, Query(max_length=MAX_CHANNEL, description="The rule set this channel gets.")
    ] = None,
    tier: Annotated[str, Query(max_length=32, description="Streamer tier.")] = "standard",
    alert_id: Annotated[
        str | None,
        Query(max_length=64, description="Test on the stored frame of this alert, not an upload."),
    ] = None,
) -> RuleTestOut:
    return await run_rule_test(
        request,
        svc,
        who.tenant_id,
        rule_set_id=rule_set_id,
        channel=channel,
        tier=tier,
        alert_id=alert_id,
    )
