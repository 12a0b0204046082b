"""RuleBook: each tenant's compiled rule sets, kept fresh without a restart.

A tenant's rule sets are read and compiled once per change: every ``refresh_s``
seconds at most, a lookup of the tenant's rules revision (one small indexed read)
tells whether anything changed; :meth:`RuleBook.invalidate`, which the API calls on
every save, makes the next lookup reload at once. A rule set is compiled once per
version, so a change to one rule set leaves the others' compiled forms in place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from bastion.rules.compiled import CompiledRuleSet, ResolvedRules, choose, compile_rule_set
from bastion.rules.repo import RuleStore, StoredRuleSet
from bastion.rules.spec import RuleSetSpec

_MAX_CHANNELS = 10_000
_MAX_COMPILED = 4_096


@dataclass
class _Tenant:
    revision: int
    checked_at: float
    rule_sets: tuple[CompiledRuleSet, ...]
    choices: dict[str, CompiledRuleSet | None] = field(default_factory=dict)


class RuleBook:
    """Resolves the rule set for a tenant's channel; safe to share between threads.

    ``fallback`` rule sets (from configuration, see
    :func:`bastion.rules.loader.load_rules_yaml`) apply to a channel none of the
    tenant's own rule sets applies to. :meth:`resolve` may read the database, at most
    once per ``refresh_s`` per tenant: call it from a worker thread, not an event loop.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        refresh_s: float = 2.0,
        fallback: Sequence[RuleSetSpec] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = RuleStore(sessions)
        self.refresh_s = refresh_s
        self._clock = clock
        self._fallback = tuple(compile_rule_set(spec) for spec in fallback)
        self._lock = threading.Lock()
        self._tenants: dict[str, _Tenant] = {}
        self._compiled: dict[tuple[int, str], CompiledRuleSet] = {}
        self._generation = 0

    def resolve(
        self, tenant_id: str, channel_name: str, tier: str = "standard"
    ) -> ResolvedRules | None:
        """The rules for ``channel_name`` with the interval scaled for ``tier``; None
        when no rule set applies (the channel is then not moderated by rules)."""
        entry = self._entry(tenant_id)
        with self._lock:
            if channel_name in entry.choices:
                chosen = entry.choices[channel_name]
            else:
                chosen = choose(entry.rule_sets, channel_name)
                if len(entry.choices) >= _MAX_CHANNELS:
                    entry.choices.clear()
                entry.choices[channel_name] = chosen
        if chosen is None:
            chosen = choose(self._fallback, channel_name)
        return chosen.resolve(tier) if chosen is not None else None

    def rule_sets(self, tenant_id: str) -> tuple[CompiledRuleSet, ...]:
        """The tenant's own rule sets, compiled, in id order."""
        return self._entry(tenant_id).rule_sets

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget the compiled rule sets of ``tenant_id`` (all tenants: None), so the
        next lookup reads the database."""
        with self._lock:
            self._generation += 1
            if tenant_id is None:
                self._tenants.clear()
            else:
                self._tenants.pop(tenant_id, None)

    # ---- internals -------------------------------------------------------
    def _entry(self, tenant_id: str) -> _Tenant:
        now = self._clock()
        with self._lock:
            entry = self._tenants.get(tenant_id)
            generation = self._generation
            if entry is not None and now - entry.checked_at < self.refresh_s:
                return entry
        if entry is not None and self.store.revision(tenant_id) == entry.revision:
            with self._lock:
                entry.checked_at = now
            return entry
        revision, stored = self.store.snapshot(tenant_id)
        fresh = _Tenant(revision, now, tuple(self._compile(s) for s in stored))
        with self._lock:
            # an invalidate() while we read means what we read may be older than a save
            if generation == self._generation:
                self._tenants[tenant_id] = fresh
        return fresh

    def _compile(self, stored: StoredRuleSet) -> CompiledRuleSet:
        key = (stored.id, stored.version)
        with self._lock:
            found = self._compiled.get(key)
        if found is None:
            found = compile_rule_set(stored.spec, stored.id)
            with self._lock:
                if len(self._compiled) >= _MAX_COMPILED:
                    self._compiled.clear()
                self._compiled[key] = found
        return found
