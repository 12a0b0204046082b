"""Bastion's moderation labels as Rekognition's moderation taxonomy, version 7.

Rekognition names unsafe content on three levels (``TaxonomyLevel`` 1–3): an L1 category
(``Explicit``), an L2 label below it (``Explicit Nudity``), sometimes an L3 label below
that (``Exposed Female Nipple``); every label answered carries its ``ParentName`` (``""``
at the top) and, as Rekognition does, its ancestors are answered with it.

:data:`V7` is that tree, as AWS documents it for model version 7.0. :data:`FROM_BASTION`
maps each label of Bastion's taxonomy (:mod:`bastion.policy.taxonomy`) that has a
counterpart to the most specific v7 label it stands for. It is the only way a v7 label is
answered: nothing appears in ``ModerationLabels`` unless an analyzer of Bastion produced
a label that maps to it or to one of its descendants. Bastion labels without a
counterpart (``Illegal Ads`` and its labels, ``Toxic Speech`` and its labels) are not
answered as moderation labels; they stay in Bastion's own result.

Where the levels differ, the mapping follows AWS's own table from version 6.1 to 7.0:
Bastion's ``Explicit Nudity`` (whole-image, from the ``nsfw`` classifier) is v7's L1
``Explicit``; ``Suggestive`` is ``Non-Explicit Nudity of Intimate parts and Kissing``;
weapons of every kind are ``Violence`` / ``Weapons`` (v7 has no level below it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

MODEL_VERSION = "7.0"
"""The ``ModerationModelVersion`` answered: the taxonomy the labels are named in."""


@dataclass(frozen=True, slots=True)
class V7Label:
    """One label of the v7 taxonomy: its name, its parent's (``""`` at level 1), its level."""

    name: str
    parent: str
    level: int


# L1 -> {L2 -> (L3, ...)}, as AWS documents version 7.0 of the moderation model.
_V7_TREE: dict[str, dict[str, tuple[str, ...]]] = {
    "Explicit": {
        "Explicit Nudity": (
            "Exposed Male Genitalia",
            "Exposed Female Genitalia",
            "Exposed Buttocks or Anus",
            "Exposed Female Nipple",
        ),
        "Explicit Sexual Activity": (),
        "Sex Toys": (),
    },
    "Non-Explicit Nudity of Intimate parts and Kissing": {
        "Non-Explicit Nudity": (
            "Bare Back",
            "Exposed Male Nipple",
            "Partially Exposed Buttocks",
            "Partially Exposed Female Breast",
            "Implied Nudity",
        ),
        "Obstructed Intimate Parts": ("Obstructed Female Nipple", "Obstructed Male Genitalia"),
        "Kissing on the Lips": (),
    },
    "Swimwear or Underwear": {
        "Female Swimwear or Underwear": (),
        "Male Swimwear or Underwear": (),
    },
    "Violence": {
        "Weapons": (),
        "Graphic Violence": (
            "Weapon Violence",
            "Physical Violence",
            "Self-Harm",
            "Blood & Gore",
            "Explosions and Blasts",
        ),
    },
    "Visually Disturbing": {
        "Death and Emaciation": ("Emaciated Bodies", "Corpses"),
        "Crashes": ("Air Crash",),
    },
    "Drugs & Tobacco": {
        "Products": ("Pills",),
        "Drugs & Tobacco Paraphernalia & Use": ("Smoking",),
    },
    "Alcohol": {
        "Alcohol Use": ("Drinking",),
        "Alcoholic Beverages": (),
    },
    "Rude Gestures": {"Middle Finger": ()},
    "Gambling": {},
    "Hate Symbols": {"Nazi Party": (), "White Supremacy": (), "Extremist": ()},
}


def _build() -> dict[str, V7Label]:
    out: dict[str, V7Label] = {}
    for l1, l2s in _V7_TREE.items():
        out[l1] = V7Label(l1, "", 1)
        for l2, l3s in l2s.items():
            out[l2] = V7Label(l2, l1, 2)
            for l3 in l3s:
                out[l3] = V7Label(l3, l2, 3)
    return out


V7: Mapping[str, V7Label] = MappingProxyType(_build())
"""Every label of the v7 moderation taxonomy by name."""

L1: tuple[str, ...] = tuple(_V7_TREE)
"""The ten top-level categories of v7."""

FROM_BASTION: Mapping[str, str] = MappingProxyType(
    {
        # Explicit (Bastion: Explicit Nudity and its labels)
        "Explicit Nudity": "Explicit",
        "Exposed Female Genitalia": "Exposed Female Genitalia",
        "Exposed Male Genitalia": "Exposed Male Genitalia",
        "Exposed Female Nipple": "Exposed Female Nipple",
        "Exposed Buttocks or Anus": "Exposed Buttocks or Anus",
        "Sexual Activity": "Explicit Sexual Activity",
        "Illustrated Explicit Nudity": "Explicit Nudity",
        "Adult Toys": "Sex Toys",
        # Suggestive: split by v7 between non-explicit nudity and swimwear
        "Suggestive": "Non-Explicit Nudity of Intimate parts and Kissing",
        "Partially Exposed Female Breast": "Partially Exposed Female Breast",
        "Bare Back": "Bare Back",
        "Revealing Clothes": "Non-Explicit Nudity",
        "Female Swimwear or Underwear": "Female Swimwear or Underwear",
        "Male Swimwear or Underwear": "Male Swimwear or Underwear",
        # Violence
        "Violence": "Violence",
        "Graphic Violence or Gore": "Blood & Gore",
        "Physical Violence": "Physical Violence",
        "Weapon Violence": "Weapon Violence",
        "Self Injury": "Self-Harm",
        "Explosions and Blasts": "Explosions and Blasts",
        # Weapons: one L2 of Violence in v7
        "Weapons": "Weapons",
        "Firearms": "Weapons",
        "Knives and Blades": "Weapons",
        "Explosive Devices": "Weapons",
        # Visually Disturbing
        "Visually Disturbing": "Visually Disturbing",
        "Corpses": "Corpses",
        "Emaciated Bodies": "Emaciated Bodies",
        "Air Crash": "Air Crash",
        # Drugs & Tobacco
        "Drugs & Tobacco": "Drugs & Tobacco",
        "Drug Paraphernalia": "Drugs & Tobacco Paraphernalia & Use",
        "Pills": "Pills",
        "Tobacco Products": "Products",
        "Smoking": "Smoking",
        # Alcohol
        "Alcohol": "Alcohol",
        "Alcoholic Beverages": "Alcoholic Beverages",
        "Drinking": "Drinking",
        # Gambling, Hate Symbols, Rude Gestures
        "Gambling": "Gambling",
        "Gambling Equipment": "Gambling",
        "Hate Symbols": "Hate Symbols",
        "Nazi Party": "Nazi Party",
        "White Supremacy": "White Supremacy",
        "Extremist": "Extremist",
        "Rude Gestures": "Rude Gestures",
        "Middle Finger": "Middle Finger",
    }
)
"""Bastion taxonomy label -> the most specific v7 label it stands for."""


def lineage(name: str) -> tuple[V7Label, ...]:
    """The v7 label ``name`` and its ancestors, most specific first."""
    out = [V7[name]]
    while out[-1].parent:
        out.append(V7[out[-1].parent])
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Scored:
    """A v7 label with the confidence (0–100) Bastion's labels give it."""

    label: V7Label
    confidence: float


def to_v7(labels: Iterable[tuple[str, float]]) -> list[Scored]:
    """Bastion labels (name, confidence) as v7 labels with their ancestors.

    Each v7 label gets the highest confidence among the Bastion labels that map to it or
    to a label below it (several frames or analyzers may name the same label). Bastion
    labels without a v7 counterpart are left out. Sorted by confidence, highest first,
    then level and name, so the answer is the same for the same labels.
    """
    best: dict[str, float] = {}
    for name, confidence in labels:
        target = FROM_BASTION.get(name)
        if target is None:
            continue
        for v7 in lineage(target):
            if confidence > best.get(v7.name, -1.0):
                best[v7.name] = confidence
    scored = [Scored(V7[n], c) for n, c in best.items()]
    scored.sort(key=lambda s: (-s.confidence, s.label.level, s.label.name))
    return scored
