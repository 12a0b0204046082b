"""Which policy applies to a request: built-in ones, a policies folder, and tenants' own."""

from __future__ import annotations

from pathlib import Path

from bastion.errors import NotFound
from bastion.policy.loader import default_policy, parse_policy
from bastion.policy.model import Lists, Policy
from bastion.store.repo import Repo


class PolicyBook:
    """Resolves a policy name for a tenant; parsed policies are cached by their text."""

    def __init__(self, repo: Repo | None, policies_dir: Path | None = None) -> None:
        self.repo = repo
        self.builtin: dict[str, Policy] = {"default": default_policy()}
        if policies_dir is not None:
            for path in sorted(policies_dir.glob("*.y*ml")):
                p = parse_policy(path.read_text("utf-8"), source=str(path))
                self.builtin[p.name] = p
        self._parsed: dict[str, Policy] = {}

    def _parse_cached(self, text: str) -> Policy:
        p = self._parsed.get(text)
        if p is None:
            if len(self._parsed) > 512:
                self._parsed.clear()
            p = self._parsed[text] = parse_policy(text)
        return p

    def names(self, tenant_id: str | None) -> list[str]:
        names = set(self.builtin)
        if self.repo is not None and tenant_id is not None:
            names.update(r.name for r in self.repo.list_policies(tenant_id))
        return sorted(names)

    def resolve(self, tenant_id: str | None, name: str | None) -> tuple[Policy, Lists]:
        """The policy to apply and the tenant's own word/domain lists."""
        lists = Lists()
        wanted = name
        if self.repo is not None and tenant_id is not None:
            tenant = self.repo.get_tenant(tenant_id)
            lists = Lists.model_validate(tenant.lists or {})
            wanted = name or tenant.default_policy
            text = self.repo.get_policy_text(tenant_id, wanted)
            if text is not None:
                return self._parse_cached(text), lists
        wanted = wanted or "default"
        if wanted in self.builtin:
            return self.builtin[wanted], lists
        raise NotFound(f"policy {wanted!r} not found", code="policy_not_found")
