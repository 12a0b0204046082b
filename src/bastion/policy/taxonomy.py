"""The moderation taxonomy: L1 categories with L2 labels below, close to Rekognition's.

Analyzers emit labels by name; :func:`label` builds a :class:`~bastion.results.Label`
with the right parent and level so no analyzer spells a hierarchy by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bastion.results import Box, Label


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    parent: str | None
    description: str

    @property
    def level(self) -> int:
        return 1 if self.parent is None else 2


_TREE: dict[str, tuple[str, dict[str, str]]] = {
    "Explicit Nudity": (
        "Sexual content and exposed genitals, anus or female nipples.",
        {
            "Exposed Female Genitalia": "Female genitalia visible.",
            "Exposed Male Genitalia": "Male genitalia visible.",
            "Exposed Female Nipple": "Female nipple visible.",
            "Exposed Buttocks or Anus": "Bare buttocks or anus.",
            "Sexual Activity": "Sexual acts.",
            "Illustrated Explicit Nudity": "Drawn or animated explicit content.",
            "Adult Toys": "Sex toys.",
        },
    ),
    "Suggestive": (
        "Sexually suggestive content without explicit nudity.",
        {
            "Female Swimwear or Underwear": "Women in swimwear or underwear.",
            "Male Swimwear or Underwear": "Men in swimwear or underwear.",
            "Partially Exposed Female Breast": "Covered or partly covered breasts.",
            "Bare Back": "Exposed back or torso.",
            "Revealing Clothes": "Revealing clothing.",
        },
    ),
    "Violence": (
        "Violence, blood and gore.",
        {
            "Graphic Violence or Gore": "Blood, wounds, gore.",
            "Physical Violence": "Fighting, assault.",
            "Weapon Violence": "Weapons used against people.",
            "Self Injury": "Self-harm.",
        },
    ),
    "Visually Disturbing": (
        "Shocking content (NSFL).",
        {
            "Corpses": "Dead bodies.",
            "Emaciated Bodies": "Starvation.",
            "Explosions and Blasts": "Explosions.",
            "Air Crash": "Aircraft accidents.",
        },
    ),
    "Weapons": (
        "Weapons shown, used or not.",
        {
            "Firearms": "Guns, rifles, revolvers.",
            "Knives and Blades": "Knives, cleavers, swords.",
            "Explosive Devices": "Bombs, grenades.",
        },
    ),
    "Drugs & Tobacco": (
        "Drugs, paraphernalia and tobacco.",
        {
            "Drug Paraphernalia": "Syringes, pipes.",
            "Pills": "Pills and pill bottles.",
            "Tobacco Products": "Cigarettes, e-cigarettes, cigars.",
            "Smoking": "People smoking.",
        },
    ),
    "Alcohol": (
        "Alcoholic drinks and drinking.",
        {
            "Alcoholic Beverages": "Beer, wine, spirits bottles and glasses.",
            "Drinking": "People drinking alcohol.",
        },
    ),
    "Gambling": ("Gambling.", {"Gambling Equipment": "Slot machines, chips, cards at a table."}),
    "Hate Symbols": (
        "Symbols of hate groups.",
        {
            "Nazi Party": "Nazi symbols.",
            "White Supremacy": "White supremacist symbols.",
            "Extremist": "Extremist group symbols and flags.",
        },
    ),
    "Rude Gestures": ("Offensive gestures.", {"Middle Finger": "The middle finger."}),
    "Illegal Ads": (
        "Unwanted advertising: spam links, blocked domains and words, product ads.",
        {
            "Blocked Domain": "A URL (from a code or text) on a blocked-domain list.",
            "Blocked Word": "Text containing a word on a blocked-word list.",
            "QR Code Link": "A QR code or barcode carrying a URL.",
            "Contact Information": "Phone numbers, messenger IDs or e-mail addresses in text.",
            "Product Ad": "Products often sold through spam ads (sunglasses, watches, bags).",
        },
    ),
    "Toxic Speech": (
        "Toxic spoken or written language (the categories of AWS Transcribe's toxicity).",
        {
            "Profanity": "Swear words and vulgar language.",
            "Hate Speech": "Attacks on people for who they are: race, religion, origin, sex.",
            "Sexual Language": "Sexual or sexually explicit language.",
            "Insults": "Demeaning or insulting language aimed at someone.",
            "Violence or Threats": "Threats of violence or calls to harm someone.",
            "Graphic Language": "Graphic descriptions of injury, gore or cruelty.",
            "Harassment or Abuse": "Bullying, intimidation or abuse of a person.",
        },
    ),
}


def _build() -> dict[str, Category]:
    out: dict[str, Category] = {}
    for l1, (desc, children) in _TREE.items():
        out[l1] = Category(l1, None, desc)
        for l2, d2 in children.items():
            out[l2] = Category(l2, l1, d2)
    return out


CATEGORIES: dict[str, Category] = _build()
L1: tuple[str, ...] = tuple(_TREE)


def get(name: str) -> Category:
    try:
        return CATEGORIES[name]
    except KeyError as exc:
        raise KeyError(f"unknown taxonomy label {name!r}") from exc


def lineage(name: str) -> tuple[str, ...]:
    """The label and its ancestors, most specific first."""
    cat = get(name)
    return (cat.name, cat.parent) if cat.parent else (cat.name,)


def expand(names: Iterable[str]) -> set[str]:
    """Close a set of label names over parents: an L2 label implies its L1."""
    out: set[str] = set()
    for n in names:
        out.update(lineage(n))
    return out


def children(l1: str) -> list[str]:
    return [c.name for c in CATEGORIES.values() if c.parent == l1]


def label(
    name: str,
    confidence: float,
    *,
    analyzer: str,
    model: str,
    version: str,
    box: Box | None = None,
    frame: int | None = None,
    source: str | None = None,
) -> Label:
    """Build a Label for a taxonomy name, clamping confidence to 0–100."""
    cat = get(name)
    return Label(
        name=cat.name,
        confidence=round(min(100.0, max(0.0, float(confidence))), 2),
        parent=cat.parent,
        level=cat.level,
        analyzer=analyzer,
        model=model,
        version=version,
        box=box,
        frame=frame,
        source=source,
    )
