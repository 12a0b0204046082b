"""The live rule set a platform starts with, and the domain and word its rules block."""

from __future__ import annotations

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
