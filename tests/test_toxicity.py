"""Toxicity of text segments with the real word lists, English model and sentence encoder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.analyzers.base import RuntimeContext
from bastion.analyzers.toxicity import ToxicityAnalyzer, ToxicityAnalyzerConfig
from bastion.media.types import TextInput
from bastion.policy import taxonomy
from bastion.runtime.config import RuntimeConfig
from bastion.text.toxicity import (
    CATEGORIES,
    TAXONOMY_L1,
    TAXONOMY_LABELS,
    ToxicityConfig,
    ToxicityScorer,
    toxicity_labels,
)

pytestmark = pytest.mark.models

BENIGN = [
    ("The weather is lovely today, sunny and warm.", "en"),
    ("Add two eggs and stir in the flour.", "en"),
    ("Good morning everyone, welcome to the show.", "en"),
    ("Das Wetter ist heute schön.", "de"),
    ("Ich koche heute Abend eine Gemüsesuppe.", "de"),
    ("Hola, ¿cómo estás? Mucho gusto.", "es"),
    ("Hoy vamos a preparar una tortilla de patatas.", "es"),
    ("今日はいい天気ですね。", "ja"),
    ("お昼ご飯にラーメンを作りました。", "ja"),
    ("안녕하세요, 만나서 반갑습니다.", "ko"),
    ("맛있는 김치찌개 만드는 법을 알려드릴게요.", "ko"),
    ("Bonjour, je vais au marché acheter du pain.", "fr"),
    ("We killed it at the concert last night.", "en"),
    ("This game is so hard I want to die.", "en"),
]


@pytest.fixture(scope="module")
def scorer() -> Iterator[ToxicityScorer]:
    s = ToxicityScorer()
    s.load()
    yield s


def test_taxonomy_has_toxic_speech() -> None:
    assert set(taxonomy.children(TAXONOMY_L1)) == set(TAXONOMY_LABELS.values())
    for category in CATEGORIES:
        assert taxonomy.get(TAXONOMY_LABELS[category]).parent == "Toxic Speech"


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        ToxicityConfig(unknown=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ToxicityConfig(thresholds={"insult": 1.5})
    assert ToxicityConfig(thresholds={"insult": 0.7}).threshold("profanity") == 0.5


@pytest.mark.parametrize(
    ("text", "language", "word"),
    [
        ("You fucking asshole.", "en", "asshole"),
        ("Du bist ein Arschloch.", "de", "arschloch"),
        ("Qué puta mierda es esto.", "es", "mierda"),
        ("死ね、クソ野郎。", "ja", "クソ野郎"),
        ("병신아 꺼져.", "ko", "병신"),
        ("Va te faire foutre, connard.", "fr", "connard"),
    ],
)
def test_swear_words_flagged_in_their_language(
    scorer: ToxicityScorer, text: str, language: str, word: str
) -> None:
    result = scorer.score(text, language)
    assert result.scores["profanity"] >= 0.9
    top = result.top("profanity")
    assert top is not None and "word_list" in result.scorers
    assert any(word in e.words for e in result.evidence if e.scorer == "word_list")


def test_word_of_another_language_is_not_flagged(scorer: ToxicityScorer) -> None:
    # "Gift" (poison) and "fick" are German list words; "con" is French. Said in a
    # language where they are innocent or absent, the word list must stay silent.
    for text, language in [
        ("I bought you a gift.", "en"),
        ("Ich habe ein Gift-Set gekauft.", "de"),
        ("He is a con artist in the movie.", "en"),
        ("Vamos con mis amigos al cine.", "es"),
        ("Ich bin nackt geboren.", "en"),
    ]:
        result = scorer.score(text, language)
        assert not [e for e in result.evidence if e.scorer == "word_list"], text
    # ...while in German the German word is a hit.
    german = scorer.score("Ich bin nackt geboren.", "de")
    assert [e for e in german.evidence if e.scorer == "word_list"]


def test_korean_particle_and_chewing(scorer: ToxicityScorer) -> None:
    # "씹" alone is also "to chew": the word list must not fire on it. (The embedding
    # scorer does lean towards profanity here; that is its known weakness.)
    chew = scorer.score("밥을 씹어 먹어요.", "ko")
    assert not [e for e in chew.evidence if e.scorer == "word_list"]
    assert scorer.score("저 병신아.", "ko").scores["profanity"] >= 0.9


def test_unknown_language_has_no_word_list_score(scorer: ToxicityScorer) -> None:
    result = scorer.score("Du bist ein Arschloch.", None)
    assert "word_list" not in result.scorers and result.notes
    assert "unknown" in result.notes[0]
    vietnamese = scorer.score("Xin chào, hôm nay trời đẹp.", "vi")
    assert "no word list for language 'vi'" in vietnamese.notes[0]


def test_threat_without_swear_words(scorer: ToxicityScorer) -> None:
    threats = [
        ("I know where you live and I will hurt you.", "en"),
        ("Ich werde dich finden und dir wehtun.", "de"),
        ("Voy a romperte la cara cuando te vea.", "es"),
        ("お前を見つけて殺してやる。", "ja"),
        ("내가 널 찾아가서 죽도록 패줄 거야.", "ko"),
    ]
    benign = scorer.score_batch([t for t, _ in BENIGN], [lang for _, lang in BENIGN])
    ceiling = max(r.scores["violence_or_threat"] for r in benign)
    for (text, _language), result in zip(
        threats,
        scorer.score_batch([t for t, _ in threats], [lang for _, lang in threats]),
        strict=True,
    ):
        score = result.scores["violence_or_threat"]
        assert score >= 0.5 and score > ceiling + 0.3, (text, score, ceiling)
        assert result.scores["profanity"] < 0.5, text
        top = result.top("violence_or_threat")
        assert top is not None and top.scorer == "embeddings" and "nearest example" in top.detail


@pytest.mark.parametrize(
    ("text", "language", "category"),
    [
        ("You are such a brainless moron.", "en", "insult"),
        ("Eres un estúpido.", "es", "insult"),
        ("お前は馬鹿だ。", "ja", "insult"),
        ("Immigrants are ruining this country, send them all back.", "en", "hate_speech"),
        ("Diese Flüchtlinge sind Ungeziefer.", "de", "hate_speech"),
        ("Let's get naked and have sex tonight.", "en", "sexual"),
        ("The blood poured from his severed arm and his intestines hung out.", "en", "graphic"),
        ("You should just kill yourself, nobody would miss you.", "en", "harassment_or_abuse"),
    ],
)
def test_categories_without_word_lists(
    scorer: ToxicityScorer, text: str, language: str, category: str
) -> None:
    result = scorer.score(text, language)
    assert result.scores[category] >= 0.5, result.scores  # type: ignore[index]


def test_benign_stays_below_thresholds(scorer: ToxicityScorer) -> None:
    results = scorer.score_batch([t for t, _ in BENIGN], [lang for _, lang in BENIGN])
    for (text, _), result in zip(BENIGN, results, strict=True):
        assert result.above(scorer.config.thresholds) == [], (text, result.scores)
        assert toxicity_labels(result, scorer.config.thresholds, version="1") == []


def test_labels_map_to_toxic_speech(scorer: ToxicityScorer) -> None:
    result = scorer.score("You fucking asshole, I will kill you.", "en")
    labels = toxicity_labels(result, scorer.config.thresholds, version="1", source="0.0-2.5")
    names = {lab.name for lab in labels}
    assert {"Profanity", "Insults", "Violence or Threats"} <= names
    for lab in labels:
        assert lab.parent == "Toxic Speech" and lab.level == 2 and lab.analyzer == "toxicity"
        assert 50 <= lab.confidence <= 100 and lab.source == "0.0-2.5"
    strict = {**scorer.config.thresholds, "profanity": 1.0}
    assert (
        "Profanity" not in {lab.name for lab in toxicity_labels(result, strict, version="1")}
        or result.scores["profanity"] >= 1.0
    )


def test_scorers_can_be_switched_off() -> None:
    words_only = ToxicityScorer(ToxicityConfig(english_model=False, embeddings=False))
    result = words_only.score("I know where you live and I will hurt you.", "en")
    assert result.scorers == ["word_list"] and result.scores["violence_or_threat"] == 0.0
    german_only = ToxicityScorer(
        ToxicityConfig(english_model=False, embeddings=False, languages=["de"])
    )
    assert german_only.score("You fucking asshole.", "en").scores["profanity"] == 0.0


def test_latency_per_segment(scorer: ToxicityScorer) -> None:
    texts = [t for t, _ in BENIGN] * 4
    languages = [lang for _, lang in BENIGN] * 4
    scorer.score_batch(texts[:4], languages[:4])  # warm
    start = time.perf_counter()
    scorer.score_batch(texts, languages)
    per_segment = (time.perf_counter() - start) / len(texts)
    assert per_segment < 0.1, per_segment
    start = time.perf_counter()
    scorer.score("Ich werde dich finden und dir wehtun.", "de")
    assert time.perf_counter() - start < 0.5


def test_the_analyzer_scores_the_lines_of_lines_from_only(tmp_path: Path) -> None:
    context = RuntimeContext(RuntimeConfig(cache_dir=tmp_path))
    heard = TextInput("You are a stupid idiot.", "en", "speech", 0, 0)
    read = TextInput("You are a stupid idiot.", "en", "ocr", 0, 0)
    spoken = ToxicityAnalyzer(ToxicityAnalyzerConfig(), context)  # default: speech only
    every = ToxicityAnalyzer(ToxicityAnalyzerConfig(lines_from=None), context)
    written = ToxicityAnalyzer(ToxicityAnalyzerConfig(lines_from=["ocr"]), context)
    assert spoken.config.lines_from == ["speech"]

    def insults(analyzer: ToxicityAnalyzer) -> list[bool]:
        analyzer.load()
        outs = analyzer.analyze([heard, read])
        return ["Insults" in {lab.name for lab in out.labels} for out in outs]

    assert insults(spoken) == [True, False]
    assert insults(every) == [True, True]
    assert insults(written) == [False, True]
    assert ToxicityAnalyzer(ToxicityAnalyzerConfig(), context).analyze([read])[0].labels == []
    # what it reads changes its labels, so its version
    assert len({spoken.version, every.version, written.version}) == 3
