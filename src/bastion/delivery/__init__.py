"""Guaranteed webhook delivery: a transactional outbox, signed requests, retries.

Producers call :func:`enqueue` inside their own transaction; a :class:`Dispatcher`
sends what is due with Standard Webhooks signatures, retries on a jittered
exponential schedule and marks deliveries dead when they run out of attempts.
Receivers verify requests with :func:`bastion.delivery.client.verify`.
"""

from __future__ import annotations

from bastion.delivery.client import WebhookVerificationError, verify
from bastion.delivery.config import DeliveryConfig
from bastion.delivery.dispatcher import Dispatcher, DispatcherStats
from bastion.delivery.outbox import (
    DeliveryPage,
    enqueue,
    get_delivery,
    list_attempts,
    list_deliveries,
    redrive,
)
from bastion.delivery.schedule import span_bounds
from bastion.delivery.signing import get_or_create_secret, rotate, signing_secrets
from bastion.delivery.tables import Delivery, DeliveryAttempt, WebhookSecret

__all__ = [
    "Delivery",
    "DeliveryAttempt",
    "DeliveryConfig",
    "DeliveryPage",
    "Dispatcher",
    "DispatcherStats",
    "WebhookSecret",
    "WebhookVerificationError",
    "enqueue",
    "get_delivery",
    "get_or_create_secret",
    "list_attempts",
    "list_deliveries",
    "redrive",
    "rotate",
    "signing_secrets",
    "span_bounds",
    "verify",
]
