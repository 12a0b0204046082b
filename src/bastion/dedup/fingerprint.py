"""What a stored result depends on, as short fingerprints.

The *model* fingerprint covers Bastion's version, the layout of a stored result
(:data:`~bastion.results.RESULT_FORMAT`), every loaded analyzer's name, kind, model
version and result-affecting settings, and how many frames of an animation are
analysed: when any of them changes, stored results stop being used and are purged.
The layout counts because a stored result is read back with defaults for the fields
it lacks: one stored without ``url_origins`` would read back with none, and rules on
URLs written in the picture would miss them.
The *scope* adds the effective policy (its content version), its compiled word
and domain lists and the versions of the tenant's own models the policy runs (tenant
heads, which a tenant's registry aliases swap while the process runs): a stored result
is reused only within the same scope.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from bastion import __version__
from bastion.analyzers import Analyzer
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Policy
from bastion.results import RESULT_FORMAT

# analyzer settings that change how fast results come, not what they say
_NOT_RESULT_AFFECTING = {"enabled", "max_batch_size", "max_wait_ms"}


def _digest(value: Any) -> str:
    canon = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def model_fingerprint(analyzers: Mapping[str, Analyzer[Any, Any]], max_frames: int) -> str:
    """Fingerprint of the result layout and the loaded analyzers (names, kinds, versions,
    settings)."""
    return _digest(
        {
            "bastion": __version__,
            "result_format": RESULT_FORMAT,
            "max_frames": max_frames,
            "analyzers": [
                {
                    "name": name,
                    "kind": a.kind,
                    "version": a.version,
                    "config": a.config.model_dump(mode="json", exclude=_NOT_RESULT_AFFECTING),
                }
                for name, a in sorted(analyzers.items())
            ],
        }
    )


def scope(policy: Policy, lists: CompiledLists, model_fp: str, tenant_models: str = "") -> str:
    """Fingerprint of everything a result depends on besides the bytes; ``tenant_models``
    names the versions of the tenant's own models (tenant heads) the policy runs."""
    parts = [policy.version, lists.version, model_fp]
    return _digest([*parts, tenant_models] if tenant_models else parts)
