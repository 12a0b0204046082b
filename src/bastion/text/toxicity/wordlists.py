"""Word-list scorer: the segment's own language's swear-word list, never all languages.

The lists are glin-profanity's (24 languages). Latin, Cyrillic, Arabic and Devanagari
text is matched word by word by glin-profanity itself. Japanese, Chinese and Thai are
written without spaces, so their entries of two or more characters are found as
substrings; Korean attaches particles to words, so an entry is found at the start of a
space-separated word (a one-character Korean entry only as a whole word: ``씹`` is also
"to chew").

The lists carry no categories: every hit is ``profanity``. A small table of Bastion's
own marks the entries that are also sexual, insulting or slurs (hate speech), and a few
Japanese entries that are mistranslations of innocent words are never reported.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Sequence

from glin_profanity import Filter
from glin_profanity.data.dictionary import dictionary

from bastion.text.toxicity.categories import ToxicityCategory
from bastion.text.toxicity.config import ToxicityConfig
from bastion.text.toxicity.result import Evidence

LANGUAGES: dict[str, str] = {
    "ar": "arabic",
    "zh": "chinese",
    "cs": "czech",
    "da": "danish",
    "nl": "dutch",
    "en": "english",
    "eo": "esperanto",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "hi": "hindi",
    "hu": "hungarian",
    "it": "italian",
    "ja": "japanese",
    "ko": "korean",
    "no": "norwegian",
    "fa": "persian",
    "pl": "polish",
    "pt": "portuguese",
    "ru": "russian",
    "es": "spanish",
    "sv": "swedish",
    "th": "thai",
    "tr": "turkish",
}
"""ISO 639-1 code → the name of glin-profanity's list for that language."""

_ALIASES = {"nb": "no", "nn": "no"}
_UNSPACED = frozenset({"ja", "zh", "th"})

# Entries of the Japanese list that translate innocent English entries word for word
# ("Jewish person", "race", "fantasy", "rubber", "hook", "webcam", "schoolgirl", ...).
_IGNORE: dict[str, frozenset[str]] = {
    "ja": frozenset(
        {
            "ユダヤ人",
            "人種",
            "ファンタジー",
            "ラバー",
            "フック",
            "ウェブカメラ",
            "いたずら",
            "女子高生",
            "幼児",
            "支配",
            "誘惑",
            "エスコート",
            "ラティーナ",
            "ぽっちゃり",
            "デブ",
            "人妻",
            "奴隷",
            "覗き",
            "脱衣",
            "直腸",
            "生殖器",
            "毛深い",
            "平手打ち",
            "殺人事件",
            "アジアのかわいい女の子",
            "ゲイの男性",
            "レズビアン",
            "ボーイズラブ",
            "女装",
            "自己愛性",
            "両性",
            "なめ",
            "xx",
            "sm",
        }
    ),
}

# Common swear words the Japanese list lacks (it is a translation of an English list).
_SUPPLEMENT: dict[str, tuple[str, ...]] = {
    "ja": ("クソ", "くそ", "クソ野郎", "ちくしょう", "バカ野郎", "死ね", "ぶっ殺す"),
}

_SEXUAL = frozenset(
    {
        # en
        "anal",
        "blowjob",
        "blow job",
        "boner",
        "cock",
        "cocks",
        "cum",
        "cumming",
        "dick",
        "dildo",
        "handjob",
        "hand job",
        "jizz",
        "orgasm",
        "orgy",
        "penis",
        "porn",
        "porno",
        "pornography",
        "pussy",
        "sex",
        "sexy",
        "tits",
        "titties",
        "boobs",
        "vagina",
        "masturbate",
        "nude",
        "nudity",
        "threesome",
        "deepthroat",
        "fellatio",
        "milf",
        # de
        "ficken",
        "bumsen",
        "vögeln",
        "poppen",
        "titten",
        "muschi",
        "möse",
        "pimmel",
        "wichsen",
        "orgasmus",
        "nackt",
        # es / fr / pt / it
        "follar",
        "polla",
        "coño",
        "pija",
        "verga",
        "chatte",
        "bite",
        "pipe",
        "foder",
        "pau",
        "buceta",
        "scopare",
        "cazzo",
        "figa",
        # ja
        "セックス",
        "ポルノ",
        "おっぱい",
        "ちんこ",
        "まんこ",
        "オマンコ",
        "フェラチオ",
        "ペニス",
        "オナニー",
        "中出し",
        "手コキ",
        "巨乳",
        "精液",
        "射精",
        "性交",
        # ko
        "섹스",
        "보지",
        "자지",
        "야동",
        "포르노",
        "자위",
        "딸딸이",
    }
)

_INSULT = frozenset(
    {
        # en
        "asshole",
        "arsehole",
        "bitch",
        "bitches",
        "bastard",
        "cunt",
        "dickhead",
        "dumbass",
        "dipshit",
        "fucker",
        "fuckface",
        "jackass",
        "motherfucker",
        "shithead",
        "slut",
        "tosser",
        "twat",
        "whore",
        "hoe",
        "retard",
        "retarded",
        "cocksucker",
        "piece of shit",
        # de
        "arschloch",
        "hurensohn",
        "wichser",
        "schlampe",
        "vollpfosten",
        "hackfresse",
        "pisser",
        "nutte",
        "fotze",
        "hure",
        "flittchen",
        "arschficker",
        "kackbratze",
        # es / fr / pt / it
        "pendejo",
        "cabrón",
        "cabron",
        "gilipollas",
        "puta",
        "zorra",
        "imbécil",
        "idiota",
        "connard",
        "salope",
        "con",
        "enculé",
        "pute",
        "pétasse",
        "stronzo",
        "vaffanculo",
        "filho da puta",
        "otário",
        "vadia",
        # ja
        "ビッチ",
        "バカ野郎",
        "クソ野郎",
        "やりまん",
        "売春婦",
        # ko
        "개새끼",
        "개자식",
        "병신",
        "미친새끼",
        "씹새끼",
        "또라이",
        "씨발놈",
        "쌍놈",
        "잡년",
        "계집년",
        "화냥년",
        "창녀",
        "애자",
    }
)

_SLURS = frozenset(
    {
        # en
        "nigger",
        "nigga",
        "faggot",
        "kike",
        "spic",
        "chink",
        "wetback",
        "beaner",
        "coon",
        "paki",
        "raghead",
        "towelhead",
        "slanteye",
        "tranny",
        "jigaboo",
        "darkie",
        "white power",
        "neonazi",
        # de
        "neger",
        "kanake",
        "schwuchtel",
        "kampflesbe",
        # es / fr
        "maricón",
        "sudaca",
        "bougnoule",
        "pédé",
        "négro",
        # ja / ko
        "ニガー",
        "ネオ・ナチ",
        "짱깨",
        "쪽바리",
        "뙤놈",
    }
)

_HINTS: tuple[tuple[ToxicityCategory, frozenset[str], str], ...] = (
    ("sexual", _SEXUAL, "sexual term"),
    ("insult", _INSULT, "insult"),
    ("hate_speech", _SLURS, "slur"),
)

PROFANITY_SCORE = 0.9
"""Score of one word-list hit; each further distinct word halves the distance to 1."""


def language_code(language: str | None) -> str | None:
    """The two-letter code of a language tag (``zh-Hant`` → ``zh``, ``nb`` → ``no``)."""
    if not language:
        return None
    code = language.replace("_", "-").split("-", 1)[0].lower()
    return _ALIASES.get(code, code)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class _LanguageList:
    """The matcher of one language: glin-profanity's filter plus the unspaced scan."""

    def __init__(self, code: str, ignore: Iterable[str], extra: Iterable[str]) -> None:
        self.code = code
        self.ignore = frozenset(_fold(w) for w in (*_IGNORE.get(code, ()), *ignore))
        self.extra = tuple(_fold(w) for w in (*_SUPPLEMENT.get(code, ()), *extra))
        words = [_fold(w) for w in dictionary.get_words(LANGUAGES[code])]
        self.entries = tuple(
            w for w in dict.fromkeys([*words, *self.extra]) if w and w not in self.ignore
        )
        self.filter = Filter(
            {
                "languages": [LANGUAGES[code]],
                "custom_words": list(self.extra),
                "ignore_words": sorted(self.ignore),
            }
        )

    def find(self, text: str) -> list[str]:
        """The distinct entries found in ``text``, in order of first appearance."""
        folded = _fold(text)
        hits: list[str] = []
        result = self.filter.check_profanity(text)
        hits.extend(_fold(w) for w in result.get("profane_words") or [])
        if self.code in _UNSPACED:
            hits.extend(w for w in self.entries if not w.isascii() and len(w) >= 2 and w in folded)
        elif self.code == "ko":
            tokens = folded.split()
            for w in self.entries:
                if any(t == w or (len(w) >= 2 and t.startswith(w)) for t in tokens):
                    hits.append(w)
        return [w for w in dict.fromkeys(hits) if w not in self.ignore]


def _words_score(count: int) -> float:
    return 1.0 - (1.0 - PROFANITY_SCORE) * 0.5 ** max(0, count - 1)


class WordListScorer:
    """Scores segments with their own language's word list (profanity, and the marked
    sexual terms, insults and slurs among the hits)."""

    def __init__(self, config: ToxicityConfig) -> None:
        self._config = config
        allowed = None if config.languages is None else {language_code(c) for c in config.languages}
        self._codes = frozenset(c for c in LANGUAGES if allowed is None or c in allowed)
        self._lists: dict[str, _LanguageList] = {}
        self._lock = threading.Lock()

    def supports(self, language: str | None) -> bool:
        """Whether a segment in ``language`` has a word list (and may use it)."""
        code = language_code(language)
        return code is not None and code in self._codes

    def _list(self, code: str) -> _LanguageList:
        with self._lock:
            found = self._lists.get(code)
            if found is None:
                found = _LanguageList(
                    code,
                    self._config.ignore_words.get(code, []),
                    self._config.extra_words.get(code, []),
                )
                self._lists[code] = found
            return found

    def score(self, text: str, language: str | None) -> list[Evidence]:
        """Evidence for one segment; empty when nothing matched or there is no list."""
        code = language_code(language)
        if code is None or code not in self._codes:
            return []
        words = self._list(code).find(text)
        if not words:
            return []
        out = [
            Evidence(
                scorer="word_list",
                category="profanity",
                score=round(_words_score(len(words)), 4),
                detail=f"{LANGUAGES[code]} word list: {', '.join(words)}",
                words=words,
            )
        ]
        for category, marked, what in _HINTS:
            hits = [w for w in words if w in marked]
            if hits:
                out.append(
                    Evidence(
                        scorer="word_list",
                        category=category,
                        score=round(_words_score(len(hits)), 4),
                        detail=f"{what} in the {LANGUAGES[code]} word list: {', '.join(hits)}",
                        words=hits,
                    )
                )
        return out

    def score_batch(
        self, texts: Sequence[str], languages: Sequence[str | None]
    ) -> list[list[Evidence]]:
        """:meth:`score` for each segment."""
        return [self.score(t, lang) for t, lang in zip(texts, languages, strict=True)]
