"""Tenants, API keys and policies in the database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import InputError, NotFound
from bastion.policy.loader import parse_policy
from bastion.policy.model import Lists, Policy
from bastion.store import keys as keyfmt
from bastion.store.tables import ApiKey, PolicyRow, Tenant

DEFAULT_TENANT = "default"
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant and the scopes of the key used."""

    tenant_id: str
    key_id: str
    scopes: tuple[str, ...]

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class Repo:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # ---- tenants ---------------------------------------------------------
    def ensure_tenant(self, tenant_id: str, name: str | None = None) -> Tenant:
        with self.sessions.begin() as s:
            t = s.get(Tenant, tenant_id)
            if t is None:
                t = Tenant(id=tenant_id, name=name or tenant_id, default_policy="default", lists={})
                s.add(t)
            return t

    def create_tenant(self, tenant_id: str, name: str) -> Tenant:
        if not _TENANT_RE.match(tenant_id):
            raise InputError(
                "tenant id must be 1-64 of a-z, 0-9, '-', '_'", code="invalid_tenant_id"
            )
        with self.sessions.begin() as s:
            if s.get(Tenant, tenant_id) is not None:
                raise InputError(f"tenant {tenant_id!r} exists", code="tenant_exists", status=409)
            t = Tenant(id=tenant_id, name=name, default_policy="default", lists={})
            s.add(t)
            return t

    def get_tenant(self, tenant_id: str) -> Tenant:
        with self.sessions() as s:
            t = s.get(Tenant, tenant_id)
            if t is None:
                raise NotFound(f"tenant {tenant_id!r} not found")
            return t

    def list_tenants(self) -> list[Tenant]:
        with self.sessions() as s:
            return list(s.scalars(select(Tenant).order_by(Tenant.created_at)))

    def update_tenant(
        self,
        tenant_id: str,
        *,
        default_policy: str | None = None,
        lists: Lists | None = None,
        training_consent: bool | None = None,
    ) -> Tenant:
        with self.sessions.begin() as s:
            t = s.get(Tenant, tenant_id)
            if t is None:
                raise NotFound(f"tenant {tenant_id!r} not found")
            if default_policy is not None:
                t.default_policy = default_policy
            if lists is not None:
                t.lists = lists.model_dump(mode="json")
            if training_consent is not None:
                t.training_consent = training_consent
            return t

    # ---- keys ------------------------------------------------------------
    def create_key(self, tenant_id: str, name: str, scopes: list[str]) -> tuple[str, ApiKey]:
        bad = [sc for sc in scopes if sc not in keyfmt.SCOPES]
        if bad or not scopes:
            raise InputError(
                f"scopes must be a non-empty subset of {list(keyfmt.SCOPES)}", code="invalid_scope"
            )
        full, key_id, digest = keyfmt.new_key()
        with self.sessions.begin() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound(f"tenant {tenant_id!r} not found")
            row = ApiKey(
                id=key_id, tenant_id=tenant_id, name=name, key_hash=digest, scopes=list(scopes)
            )
            s.add(row)
        return full, row

    def install_fixed_key(self, key: str, tenant_id: str = DEFAULT_TENANT) -> ApiKey:
        key_id, digest = keyfmt.from_fixed(key)
        with self.sessions.begin() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                row = ApiKey(
                    id=key_id,
                    tenant_id=tenant_id,
                    name="admin (BASTION_ADMIN_API_KEY)",
                    key_hash=digest,
                    scopes=["admin"],
                )
                s.add(row)
            else:
                row.key_hash, row.revoked_at = digest, None
            return row

    def has_keys(self) -> bool:
        with self.sessions() as s:
            return s.scalars(select(ApiKey.id).limit(1)).first() is not None

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        with self.sessions() as s:
            q = select(ApiKey).order_by(ApiKey.created_at)
            if tenant_id is not None:
                q = q.where(ApiKey.tenant_id == tenant_id)
            return list(s.scalars(q))

    def revoke_key(self, key_id: str, tenant_id: str | None = None) -> ApiKey:
        with self.sessions.begin() as s:
            row = s.get(ApiKey, key_id)
            if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
                raise NotFound(f"key {key_id!r} not found")
            row.revoked_at = row.revoked_at or datetime.now(UTC)
            return row

    def authenticate(self, presented: str) -> Principal | None:
        found = keyfmt.lookup_id(presented)
        if found is None:
            return None
        key_id, digest = found
        with self.sessions() as s:
            row = s.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None or not keyfmt.verify(row.key_hash, digest):
                return None
            tenant = s.get(Tenant, row.tenant_id)
            if tenant is None or tenant.disabled_at is not None:
                return None
            return Principal(row.tenant_id, row.id, tuple(row.scopes))

    # ---- policies --------------------------------------------------------
    def put_policy(self, tenant_id: str, yaml_text: str) -> Policy:
        policy = parse_policy(yaml_text)
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            row = s.scalars(
                select(PolicyRow).where(
                    PolicyRow.tenant_id == tenant_id, PolicyRow.name == policy.name
                )
            ).first()
            if row is None:
                s.add(
                    PolicyRow(
                        tenant_id=tenant_id,
                        name=policy.name,
                        yaml_text=yaml_text,
                        version=policy.version,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                row.yaml_text, row.version, row.updated_at = yaml_text, policy.version, now
        return policy

    def get_policy_text(self, tenant_id: str, name: str) -> str | None:
        with self.sessions() as s:
            row = s.scalars(
                select(PolicyRow).where(PolicyRow.tenant_id == tenant_id, PolicyRow.name == name)
            ).first()
            return row.yaml_text if row else None

    def list_policies(self, tenant_id: str) -> list[PolicyRow]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(PolicyRow)
                    .where(PolicyRow.tenant_id == tenant_id)
                    .order_by(PolicyRow.name)
                )
            )

    def delete_policy(self, tenant_id: str, name: str) -> None:
        with self.sessions.begin() as s:
            row = s.scalars(
                select(PolicyRow).where(PolicyRow.tenant_id == tenant_id, PolicyRow.name == name)
            ).first()
            if row is None:
                raise NotFound(f"policy {name!r} not found")
            s.delete(row)
