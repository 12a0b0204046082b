"""Content kinds: the engine feeds each analyzer the inputs of the kind it consumes.

Small analyzers of every kind, defined here, record what they are given: a ``text``
analyzer gets exactly the lines stage one read (a frame analyzer that "reads" lines
from the pixels, then the real OCR), an ``embedding`` analyzer gets the real ``labels``
analyzer's embedding, an ``audio_window`` analyzer gets nothing on images, without
an error, and gets an audio window, whose lines reach the ``text`` analyzers. Their
kinds have names no other test uses, and registering them leaves the settings alone:
those accept the built-in analyzers only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pytest
from pydantic import ValidationError

from bastion.analyzers import BUILT_IN, registry
from bastion.analyzers.base import (
    AnalyzerConfig,
    AudioAnalyzer,
    ContentKind,
    EmbeddingAnalyzer,
    FrameAnalyzer,
    TextAnalyzer,
)
from bastion.analyzers.labels import LabelsAnalyzer, LabelsConfig
from bastion.analyzers.ocr import OcrConfig
from bastion.config import Settings
from bastion.media.types import AudioWindow, DecodedImage, EmbeddingInput, Frame, TextInput
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.stages import Routed, per_frame
from bastion.policy.model import Policy
from bastion.results import AnalyzerOutput, ModerationResult, Tag, TextLine
from tests.support import textimages as ti
from tests.support.media import benign_photos

READER = "kinds_test_reader"
TEXT = "kinds_test_text"
EMBEDDING = "kinds_test_embedding"
AUDIO = "kinds_test_audio"
HEARER = "kinds_test_hearer"
TEST_KINDS = (READER, TEXT, EMBEDDING, AUDIO, HEARER)


@dataclass
class Record:
    """What a test analyzer was given: how often it was loaded, and every item analysed."""

    loaded: int = 0
    seen: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, batch: Sequence[Any]) -> None:
        with self.lock:
            self.seen.extend(batch)


class _Probe:
    """The parts every test analyzer shares: a fixed model and version, no categories,
    and a :class:`Record` of its calls."""

    @cached_property
    def record(self) -> Record:
        return Record()

    @property
    def model_name(self) -> str:
        return "probe"

    @property
    def version(self) -> str:
        return "1"

    def categories(self) -> list[str]:
        return []

    def load(self) -> None:
        self.record.loaded += 1


class ReaderConfig(AnalyzerConfig):
    type: Literal["kinds_test_reader"] = "kinds_test_reader"
    fail: bool = False


class ReaderAnalyzer(_Probe, FrameAnalyzer[ReaderConfig, Frame]):
    """Reads ``rgb[0, 0, 0]`` lines of text in a frame: "line <n> of frame <index>"."""

    kind = READER
    config_model = ReaderConfig
    emits = ("text",)

    def preprocess(self, frame: Frame) -> Frame:
        return frame

    def analyze(self, batch: Sequence[Frame]) -> list[AnalyzerOutput]:
        if self.config.fail:
            raise RuntimeError("reader broke")
        return [
            AnalyzerOutput(
                text=[
                    TextLine(text=f"line {n} of frame {f.index}", confidence=90, engine="reader")
                    for n in range(int(f.rgb[0, 0, 0]))
                ]
            )
            for f in batch
        ]


class TextProbeConfig(AnalyzerConfig):
    type: Literal["kinds_test_text"] = "kinds_test_text"


class TextProbe(_Probe, TextAnalyzer[TextProbeConfig, TextInput]):
    """Tags every line it gets with the line's text."""

    kind = TEXT
    config_model = TextProbeConfig
    input = "one text line, as read"
    emits = ("tags",)

    def preprocess(self, line: TextInput) -> TextInput:
        return line

    def analyze(self, batch: Sequence[TextInput]) -> list[AnalyzerOutput]:
        self.record.add(batch)
        return [
            AnalyzerOutput(
                tags=[Tag(name=f"read:{t.text}", confidence=50, analyzer=TEXT, version="1")]
            )
            for t in batch
        ]


class EmbeddingProbeConfig(AnalyzerConfig):
    type: Literal["kinds_test_embedding"] = "kinds_test_embedding"


class EmbeddingProbe(_Probe, EmbeddingAnalyzer[EmbeddingProbeConfig, EmbeddingInput]):
    """Tags every embedding it gets with its length."""

    kind = EMBEDDING
    config_model = EmbeddingProbeConfig
    emits = ("tags",)

    def preprocess(self, embedding: EmbeddingInput) -> EmbeddingInput:
        return embedding

    def analyze(self, batch: Sequence[EmbeddingInput]) -> list[AnalyzerOutput]:
        self.record.add(batch)
        return [
            AnalyzerOutput(
                tags=[
                    Tag(
                        name=f"dims:{e.vector.size}", confidence=50, analyzer=EMBEDDING, version="1"
                    )
                ]
            )
            for e in batch
        ]


class AudioProbeConfig(AnalyzerConfig):
    type: Literal["kinds_test_audio"] = "kinds_test_audio"


class AudioProbe(_Probe, AudioAnalyzer[AudioProbeConfig, AudioWindow]):
    """Would tag every audio window it gets."""

    kind = AUDIO
    config_model = AudioProbeConfig
    emits = ("tags",)

    def preprocess(self, window: AudioWindow) -> AudioWindow:
        return window

    def analyze(self, batch: Sequence[AudioWindow]) -> list[AnalyzerOutput]:
        self.record.add(batch)
        return [
            AnalyzerOutput(tags=[Tag(name="heard", confidence=50, analyzer=AUDIO, version="1")])
        ]


@asynccontextmanager
async def engine_with(*configs: AnalyzerConfig) -> AsyncIterator[Engine]:
    """An engine running ``configs``. The settings cannot hold the test kinds (they accept
    the built-in analyzers only), so the configs are put in a copy, unvalidated."""
    settings = Settings().model_copy(update={"analyzers": list(configs)})
    engine = Engine(settings)
    try:
        yield engine
    finally:
        await engine.close()


def policy(*analyzers: str) -> Policy:
    return Policy(name="kinds", analyzers=list(analyzers))


def decoded(*frames: Frame) -> DecodedImage:
    """``frames`` as one decoded item, animated when there are several."""
    first = frames[0].rgb
    digest = hashlib.sha256(b"".join(f.rgb.tobytes() for f in frames)).hexdigest()
    return DecodedImage(
        frames=tuple(frames),
        format="PNG",
        mode="RGB",
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        sha256=digest,
        byte_size=int(sum(f.rgb.nbytes for f in frames)),
        total_frames=max(f.index for f in frames) + 1,
    )


def lines_frame(lines: int, index: int) -> Frame:
    """A frame the reader reads ``lines`` lines in."""
    return Frame(rgb=np.full((8, 8, 3), lines, dtype=np.uint8), index=index)


async def moderate(engine: Engine, item: DecodedImage, applied: Policy) -> ModerationResult:
    """``item`` moderated under ``applied`` on ``engine``, the one way in."""
    return await Moderation(engine).moderate_decoded(item, applied)


def probe(engine: Engine, name: str) -> _Probe:
    found = engine.analyzers[name]
    assert isinstance(found, _Probe)
    return found


async def test_text_analyzer_gets_exactly_the_lines_read_with_their_frame() -> None:
    async with engine_with(ReaderConfig(), TextProbeConfig()) as engine:
        item = decoded(lines_frame(2, 0), lines_frame(0, 3), lines_frame(1, 5))
        result = await moderate(engine, item, policy(READER, TEXT))
        seen = probe(engine, TEXT).record.seen
    assert not result.errors
    expected = [
        TextInput(
            text=f"line {n} of frame {f}",
            language=None,
            analyzer=READER,
            frame_index=f,
            line_index=n,
        )
        for f, n in [(0, 0), (0, 1), (5, 0)]
    ]
    assert sorted(seen, key=lambda t: (t.frame_index, t.line_index)) == expected
    # each output is attributed to the frame its line was read in
    tags = {(t.name, t.frame) for t in result.tags if t.analyzer == TEXT}
    assert tags == {(f"read:{t.text}", t.frame_index) for t in expected}
    assert [(line.text, line.frame) for line in result.text] == [
        (t.text, t.frame_index) for t in expected
    ]
    assert [t.analyzer for t in result.timings] == [READER, TEXT]


async def test_a_text_analyzer_without_lines_is_not_loaded_and_adds_no_error() -> None:
    async with engine_with(ReaderConfig(), TextProbeConfig()) as engine:
        result = await moderate(engine, decoded(lines_frame(0, 0)), policy(READER, TEXT))
        text = probe(engine, TEXT)
    assert not result.errors and result.decision == "allow"
    assert (text.record.loaded, text.record.seen) == (0, [])
    assert {t.analyzer: t.ms for t in result.timings}[TEXT] == 0.0


async def test_a_failed_reader_leaves_the_text_analyzer_without_input() -> None:
    async with engine_with(ReaderConfig(fail=True), TextProbeConfig()) as engine:
        result = await moderate(engine, decoded(lines_frame(2, 0)), policy(READER, TEXT))
        seen = probe(engine, TEXT).record.seen
    assert [(e["analyzer"], e["code"]) for e in result.errors] == [(READER, "analyzer_failed")]
    assert seen == []


class HearerConfig(AnalyzerConfig):
    type: Literal["kinds_test_hearer"] = "kinds_test_hearer"


class Hearer(_Probe, AudioAnalyzer[HearerConfig, AudioWindow]):
    """Hears one line per audio window: "heard <start_s>"."""

    kind = HEARER
    config_model = HearerConfig
    emits = ("text",)

    def preprocess(self, window: AudioWindow) -> AudioWindow:
        return window

    def analyze(self, batch: Sequence[AudioWindow]) -> list[AnalyzerOutput]:
        self.record.add(batch)
        return [
            AnalyzerOutput(
                text=[TextLine(text=f"heard {w.start_s}", confidence=80, language="en", engine="h")]
            )
            for w in batch
        ]


async def test_an_audio_window_reaches_audio_analyzers_and_their_lines_reach_stage_two() -> None:
    window = AudioWindow(
        samples=np.zeros(1600, dtype=np.float32), sample_rate=16_000, start_s=30.0, end_s=30.1
    )
    async with engine_with(ReaderConfig(), HearerConfig(), TextProbeConfig()) as engine:
        result = await Moderation(engine).moderate_audio_window(
            window, policy(READER, HEARER, TEXT)
        )
        heard = probe(engine, HEARER).record.seen
        read = probe(engine, TEXT).record.seen
        reader = probe(engine, READER)
    assert not result.errors and result.decision == "allow"
    assert heard == [window]
    assert read == [
        TextInput(text="heard 30.0", language="en", analyzer=HEARER, frame_index=0, line_index=0)
    ]
    assert [line.text for line in result.text] == ["heard 30.0"]
    assert [t.name for t in result.tags] == ["read:heard 30.0"]
    assert (reader.record.loaded, result.media.frames_analyzed) == (0, 0)


async def test_audio_analyzer_gets_nothing_on_images_and_nothing_fails() -> None:
    async with engine_with(ReaderConfig(), AudioProbeConfig()) as engine:
        item = decoded(lines_frame(1, 0), lines_frame(1, 1))
        result = await moderate(engine, item, policy(READER, AUDIO))
        audio = probe(engine, AUDIO)
    assert not result.errors and result.decision == "allow"
    assert (audio.record.loaded, audio.record.seen) == (0, [])
    assert not [t for t in result.tags if t.analyzer == AUDIO]
    assert AUDIO in result.versions
    assert len(result.text) == 2  # the frame analyzer ran as before


@pytest.mark.models
async def test_embedding_analyzer_gets_the_labels_embedding() -> None:
    photo = benign_photos()["skimage-coffee"]
    async with engine_with(LabelsConfig(), EmbeddingProbeConfig()) as engine:
        result = await moderate(engine, decoded(Frame(rgb=photo)), policy("labels", EMBEDDING))
        seen = probe(engine, EMBEDDING).record.seen
        labels = engine.analyzers["labels"]
        assert isinstance(labels, LabelsAnalyzer)
        direct = labels.analyze([labels.preprocess(Frame(rgb=photo))])[0].embedding
    assert not result.errors
    assert len(seen) == 1
    got = seen[0]
    assert isinstance(got, EmbeddingInput)
    assert (got.analyzer, got.model, got.version, got.frame_index) == (
        "labels",
        labels.model_name,
        labels.version,
        0,
    )
    assert direct is not None and got.vector.shape == direct.shape == (1280,)
    assert np.allclose(got.vector, direct, atol=1e-4)
    assert [(t.name, t.frame) for t in result.tags if t.analyzer == EMBEDDING] == [
        ("dims:1280", None)
    ]


@pytest.mark.models
async def test_text_analyzer_gets_the_lines_the_real_ocr_read() -> None:
    photo = ti.banner(benign_photos()["skimage-chelsea"], "en")
    async with engine_with(OcrConfig(), TextProbeConfig()) as engine:
        result = await moderate(engine, decoded(Frame(rgb=photo)), policy("ocr", TEXT))
        seen = probe(engine, TEXT).record.seen
    assert not result.errors
    assert result.text, "the OCR read nothing"
    assert sorted((t.line_index, t.text, t.language) for t in seen) == [
        (n, line.text, line.language) for n, line in enumerate(result.text)
    ]
    assert all(t.analyzer == "ocr" and t.frame_index == 0 for t in seen)


def test_per_frame_combines_the_outputs_of_one_frame_in_order() -> None:
    outs = [
        AnalyzerOutput(tags=[Tag(name=n, confidence=1, analyzer="a", version="1")]) for n in "xyz"
    ]
    routed = [Routed(2, "x"), Routed(0, "y"), Routed(2, "z")]
    frames = per_frame(routed, outs, 4)
    assert [[t.name for t in out.tags] for out in frames] == [["y"], [], ["x", "z"], []]


async def test_listing_says_what_each_analyzer_consumes() -> None:
    async with engine_with(ReaderConfig(), TextProbeConfig(), AudioProbeConfig()) as engine:
        infos = {i.name: i.model_dump(mode="json") for i in engine.infos()}
    assert {n: (i["consumes"], i["input"]) for n, i in infos.items()} == {
        READER: ("image_frame", "RGB frame"),
        TEXT: ("text", "one text line, as read"),
        AUDIO: ("audio_window", "mono float32 audio window"),
    }


def test_built_in_analyzers_say_what_they_consume_and_what_their_model_gets() -> None:
    """The tenant heads read ``labels``' embeddings, ``speech`` audio windows,
    ``toxicity`` the text lines others read; all the others read image frames."""
    special = {
        "tenant_head": (ContentKind.EMBEDDING, EmbeddingAnalyzer.input),
        "speech": (ContentKind.AUDIO_WINDOW, AudioAnalyzer.input),
        "toxicity": (ContentKind.TEXT, TextAnalyzer.input),
    }
    for kind, cls in BUILT_IN.items():
        consumes, generic = special.get(kind, (ContentKind.IMAGE_FRAME, FrameAnalyzer.input))
        assert cls.consumes is consumes, kind
        assert cls.input and cls.input != generic, kind


def test_test_kinds_are_registered_but_not_accepted_by_the_settings() -> None:
    assert set(TEST_KINDS) <= set(registry())
    assert not set(TEST_KINDS) & set(BUILT_IN)
    with pytest.raises(ValidationError) as info:
        Settings(analyzers=[{"type": TEXT}])
    message = str(info.value)
    assert f"unknown analyzer type {TEXT!r}; known: {sorted(BUILT_IN)}" in message
    schema = json.dumps(Settings.model_json_schema())
    assert not [k for k in TEST_KINDS if k in schema]


def test_an_analyzer_without_a_content_kind_or_a_type_literal_is_refused() -> None:
    from bastion.analyzers.base import Analyzer

    before = registry()
    with pytest.raises(TypeError, match="must derive from FrameAnalyzer"):

        class NoKind(Analyzer[ReaderConfig, Frame]):
            kind = "kinds_test_no_kind"
            config_model = ReaderConfig

    with pytest.raises(TypeError, match=r"type: Literal\['kinds_test_wrong_tag'\]"):

        class WrongTag(ReaderAnalyzer):
            kind = "kinds_test_wrong_tag"

    assert registry() == before
