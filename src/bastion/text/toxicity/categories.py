"""The seven toxicity categories (those AWS Transcribe reports) and their taxonomy labels."""

from __future__ import annotations

from typing import Literal, get_args

ToxicityCategory = Literal[
    "profanity",
    "hate_speech",
    "sexual",
    "insult",
    "violence_or_threat",
    "graphic",
    "harassment_or_abuse",
]
"""A toxicity category, spelled as AWS Transcribe spells it."""

CATEGORIES: tuple[ToxicityCategory, ...] = get_args(ToxicityCategory)
"""All categories, in a stable order."""

TAXONOMY_L1 = "Toxic Speech"
"""The L1 taxonomy label every toxicity label sits under."""

TAXONOMY_LABELS: dict[ToxicityCategory, str] = {
    "profanity": "Profanity",
    "hate_speech": "Hate Speech",
    "sexual": "Sexual Language",
    "insult": "Insults",
    "violence_or_threat": "Violence or Threats",
    "graphic": "Graphic Language",
    "harassment_or_abuse": "Harassment or Abuse",
}
"""The L2 taxonomy label (below :data:`TAXONOMY_L1`) of each category."""
