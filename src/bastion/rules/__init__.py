"""The live-stream rules engine: which rules apply to a channel, and which fired on a frame.

Rule sets are global (``channel_pattern``: a regular expression searched in channel
names; among several matches the lowest ``priority`` number wins) or belong to one
channel (``channel``: the exact name; it overrides every global one). Each sets the
sampling interval, scaled by the streamer's reputation tier, whether frames similar
to the last analysed one are skipped, the analysis policy, and rules that ``alert``
moderators, queue the alert for ``review`` or ``auto_stop`` the stream. See
:mod:`bastion.rules.spec` for the format.

What a stream session uses::

    from bastion.rules import RuleBook, evaluate

    book = RuleBook(sessions)                      # a SQLAlchemy sessionmaker
    resolved = book.resolve(tenant_id, channel_name, tier="standard")
    if resolved is not None:                       # None: no rule set applies
        resolved.sample_interval_s                 # seconds between frames, tier-scaled
        resolved.similarity_threshold              # Hamming bits, None: don't skip frames
        resolved.similarity_hash                   # 'pdq' or 'dhash'
        resolved.policy                            # analysis policy, None: tenant default
        matches = evaluate(resolved, result, lists)  # result: a ModerationResult
        for m in matches:                          # strongest action first
            m.rule, m.action, m.labels, m.text, m.urls, m.reason

``lists`` are the tenant's word and domain lists (:class:`~bastion.policy.model.Lists`
or, for many frames, compiled once with ``engine.compiled_lists``); rules with a
``lists`` condition need them. :meth:`RuleBook.resolve` may read the database (at most
every ``refresh_s`` per tenant), so call it from a worker thread; :func:`evaluate` is
pure and fast. :meth:`RuleBook.invalidate` drops a tenant's cached rule sets at once.

Rule sets kept in configuration rather than the database are read with
:func:`load_rules_yaml` and given to ``RuleBook(sessions, fallback=...)``.
"""

from bastion.rules.book import RuleBook
from bastion.rules.compiled import CompiledRuleSet, ResolvedRules, choose, compile_rule_set
from bastion.rules.errors import RulesError, RuleSetConflict
from bastion.rules.evaluate import RuleMatch, RuleOutcome, evaluate, explain
from bastion.rules.loader import dump_rules_yaml, load_rules_yaml
from bastion.rules.spec import RuleSetSpec, RuleSpec

__all__ = [
    "CompiledRuleSet",
    "ResolvedRules",
    "RuleBook",
    "RuleMatch",
    "RuleOutcome",
    "RuleSetConflict",
    "RuleSetSpec",
    "RuleSpec",
    "RulesError",
    "choose",
    "compile_rule_set",
    "dump_rules_yaml",
    "evaluate",
    "explain",
    "load_rules_yaml",
]
