"""The rules and policies of the streams one process runs, looked up for all of them once
a tick.

A stream session needs its rule set (how often to sample, which frames to skip, which
rules to act on) and, for every analysed frame, the policy the rule set names with the
tenant's word and domain lists. Rather than each session asking every few seconds, and
each frame asking again, through the thread pool, the process keeps them here: once a
tick one call in a worker thread looks up every ``(tenant, channel, tier)`` and every
``(tenant, policy)`` its sessions need, and every session gets what applies to it now
(its callback runs on the event loop's thread). A change applies to running streams
within a tick of the :class:`~bastion.rules.book.RuleBook` seeing it (at once after a
save through this process's API, within the book's ``refresh_s`` otherwise) and within
a tick for a policy or the tenant's lists.

A rule set that cannot be read keeps its last known value (the error is logged); a
policy that cannot be resolved is left to the frame, which resolves it itself and fails
as it would without this cache (counted as an analysis error of the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from bastion.pipeline.policies import PolicyBook
from bastion.policy.model import Lists, Policy
from bastion.rules import ResolvedRules, RuleBook

log = logging.getLogger(__name__)

REFRESH_S = 1.0
"""How often the rules and policies of running streams are looked up again."""

RulesKey = tuple[str, str, str]
"""(tenant, channel, streamer tier): what a rule set is chosen by."""
PolicyKey = tuple[str, str | None]
"""(tenant, policy name; None: the tenant's default)."""


@dataclass(frozen=True, slots=True)
class StreamRules:
    """What a stream's frames are analysed under, as of the last lookup."""

    resolved: ResolvedRules | None
    """The rule set that applies (None: none does)."""
    policy: tuple[Policy, Lists] | None
    """The rule set's policy and the tenant's lists; None when it could not be resolved
    (each frame then resolves it itself)."""


OnRules = Callable[[StreamRules], None]
"""Takes a stream's rules after every lookup; runs on the event loop's thread."""


@dataclass
class _Looked:
    rules: dict[RulesKey, ResolvedRules | None] = field(default_factory=dict)
    policies: dict[PolicyKey, tuple[Policy, Lists] | None] = field(default_factory=dict)


@dataclass
class RulesCache:
    """The rules of a process's running streams; see the module documentation. Used
    from one event loop."""

    rules: RuleBook
    policies: PolicyBook
    executor: Executor | None = None
    """Where lookups run (None: the event loop's default thread pool)."""
    every_s: float = REFRESH_S
    lookups: int = 0
    """Lookups in a worker thread so far (one per tick, one per stream not yet known)."""
    _rules: dict[RulesKey, ResolvedRules | None] = field(default_factory=dict)
    _policies: dict[PolicyKey, tuple[Policy, Lists] | None] = field(default_factory=dict)
    _watchers: dict[str, tuple[RulesKey, OnRules]] = field(default_factory=dict)

    def watch(self, pk: str, key: RulesKey, on_rules: OnRules) -> None:
        """Hand stream ``pk`` its rules after every lookup, until :meth:`forget`."""
        self._watchers[pk] = (key, on_rules)

    def forget(self, pk: str) -> None:
        self._watchers.pop(pk, None)

    def current(self, key: RulesKey) -> StreamRules | None:
        """The rules of ``key`` as last looked up; None when never looked up."""
        if key not in self._rules:
            return None
        resolved = self._rules[key]
        return StreamRules(resolved, self._policies.get(_policy_key(key, resolved)))

    async def get(self, key: RulesKey) -> StreamRules:
        """The rules of ``key``: as last looked up, or looked up now (a new stream). A
        rule set that cannot be read raises here."""
        known = self.current(key)
        if known is not None:
            return known
        looked = await self._run(self._look_up, [key], [], True)
        self._store(looked)
        found = self.current(key)
        assert found is not None
        return found

    async def refresh(self) -> None:
        """Look up the rules and policies of every watched stream, in one call in a
        worker thread, and hand each stream its own."""
        keys = sorted({key for key, _ in self._watchers.values()})
        if not keys:
            return
        policy_keys = sorted(
            {_policy_key(k, self._rules.get(k)) for k in keys},
            key=lambda k: (k[0], k[1] or ""),
        )
        looked = await self._run(self._look_up, keys, policy_keys, False)
        self._store(looked)
        for pk, (key, on_rules) in list(self._watchers.items()):
            rules = self.current(key)
            if rules is None:
                continue
            try:
                on_rules(rules)
            except Exception:
                log.exception("rules of stream %s could not be applied", pk)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Refresh every ``every_s`` until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)
            if stop.is_set():
                break
            try:
                await self.refresh()
            except Exception:
                log.exception("rules of running streams could not be looked up")

    # ---- internals -------------------------------------------------------------
    async def _run(
        self,
        call: Callable[[list[RulesKey], list[PolicyKey], bool], _Looked],
        keys: list[RulesKey],
        policy_keys: list[PolicyKey],
        strict: bool,
    ) -> _Looked:
        self.lookups += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, call, keys, policy_keys, strict)

    def _look_up(self, keys: list[RulesKey], policy_keys: list[PolicyKey], strict: bool) -> _Looked:
        """In a worker thread: the rule sets of ``keys``, then the policies they and
        ``policy_keys`` name. ``strict``: a rule set that cannot be read raises (else it
        is logged and left out, keeping its last value)."""
        looked = _Looked()
        for key in keys:
            try:
                looked.rules[key] = self.rules.resolve(*key)
            except Exception:
                if strict:
                    raise
                log.exception("rules of channel %s (tenant %s) could not be read", key[1], key[0])
        wanted = set(policy_keys)
        for key in keys:
            if key in looked.rules:
                wanted.add(_policy_key(key, looked.rules[key]))
        for tenant, name in wanted:
            try:
                looked.policies[(tenant, name)] = self.policies.resolve(tenant, name)
            except Exception:  # the frame resolves it itself, and fails there
                log.debug("policy %s of tenant %s not resolved", name, tenant, exc_info=True)
                looked.policies[(tenant, name)] = None
        return looked

    def _store(self, looked: _Looked) -> None:
        self._rules.update(looked.rules)
        self._policies.update(looked.policies)
        wanted = {key for key, _ in self._watchers.values()} | set(looked.rules)
        for key in [k for k in self._rules if k not in wanted]:
            del self._rules[key]
        named = {_policy_key(k, self._rules[k]) for k in self._rules}
        for gone in [k for k in self._policies if k not in named]:
            del self._policies[gone]


def _policy_key(key: RulesKey, resolved: ResolvedRules | None) -> PolicyKey:
    return (key[0], resolved.policy if resolved is not None else None)
