"""Rule sets, real images and the API handle shared by the rules engine and rules API tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import qrcode
from fastapi import FastAPI
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from bastion.api.services import Services
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from tests.conftest import ADMIN_KEY
from tests.samples import benign_photos, encode
from tests.services import pg_available, pg_schema, unavailable
from tests.textimages import banner

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Api:
    """An in-process app and its client; each test makes a tenant of its own."""

    client: httpx.AsyncClient
    app: FastAPI

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc

    async def tenant(self) -> dict[str, str]:
        """Admin headers of a new tenant, so tests do not see each other's documents."""
        tid = f"t{uuid.uuid4().hex[:10]}"
        r = await self.client.post("/v1/tenants", json={"id": tid, "name": tid}, headers=AUTH)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['admin_key']['key']}"}

    async def reader(self, admin: dict[str, str]) -> dict[str, str]:
        """Headers of a read-only key of the tenant ``admin`` belongs to."""
        r = await self.client.post("/v1/keys", json={"scopes": ["read"]}, headers=admin)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}


BLOCKED_DOMAIN = "spam-shop.example"
BLOCKED_WORD = "casino"

# A global rule set of the kind a platform starts with: category rules at realistic
# thresholds, and ad/spam rules on text, URLs and the tenant's lists.
STREAM_RULES = f"""\
name: live-default
description: every channel
channel_pattern: ".*"
priority: 100
sample_interval_s: 10
ignore_similar: {{enabled: true, hash: pdq, threshold: 31}}
tiers: {{trusted: 3.0, standard: 1.0, new: 0.5}}
rules:
  - name: explicit
    categories: [Explicit Nudity]
    min_confidence: 80
    action: auto_stop
  - name: suggestive
    categories: [Suggestive]
    min_confidence: 85
  - name: gore
    categories: [Violence, Visually Disturbing]
    min_confidence: 80
    action: auto_stop
  - name: weapons
    categories: [Weapons]
    min_confidence: 70
  - name: drugs
    categories: [Drugs & Tobacco]
    min_confidence: 80
  - name: qr-link
    categories: [QR Code Link]
    min_confidence: 50
  - name: spam-domain
    urls: {{domains: [{BLOCKED_DOMAIN}]}}
    action: auto_stop
  - name: casino-ad
    text: {{words: [{BLOCKED_WORD}], regex: 'win\\s+\\$?\\d+'}}
    action: auto_stop
  - name: tenant-lists
    lists: [blocked_words, blocked_domains]
    action: alert
"""


def qr_on_photo(payload: str, photo: str = "skimage-coffee") -> bytes:
    """A real photo with a QR code carrying ``payload`` pasted on it, as PNG."""
    base = Image.fromarray(benign_photos()[photo]).copy()
    code = qrcode.make(payload).get_image().convert("RGB").resize((220, 220))
    base.paste(code, (20, 20))
    return encode(np.asarray(base), "PNG")


def text_on_photo(text: str, photo: str = "skimage-chelsea") -> bytes:
    """A real photo with ``text`` rendered on a banner, as PNG."""
    return encode(banner(benign_photos()[photo], "en", text), "PNG")


def photo(name: str) -> bytes:
    return encode(benign_photos()[name])


@contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    """A database URL: a SQLite file, or a PostgreSQL schema of its own."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'rules.db'}"
        return
    if not pg_available():
        unavailable("PostgreSQL")
    with pg_schema() as url:
        yield url


@contextmanager
def database(kind: str, folder: Path) -> Iterator[tuple[sessionmaker[Session], Repo]]:
    """A migrated database (SQLite or PostgreSQL): its sessions and repository."""
    with database_url(kind, folder) as url:
        db = make_engine(url)
        try:
            migrate(db)
            sessions = session_factory(db)
            yield sessions, Repo(sessions)
        finally:
            db.dispose()
