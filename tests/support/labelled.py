"""A tenant's labelled samples made of real images with their real embeddings.

:func:`spam_images` encodes the contact-spam task of :mod:`tests.support.spam_images`
(real photos carrying a phone number, a messenger id or a price, against the same
photos with an ordinary caption or none) as JPEG files and embeds each file as a sample
keeps it: decoded within the media limits, first frame through the ``labels`` analyzer
(EfficientNet-Lite0). :func:`add_samples` stores them as a tenant's imported samples:
the bytes in the media store, the label, the decision and the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bastion.media.image import decode_image
from bastion.pipeline.engine import Engine
from bastion.samples.embedding import EmbeddingModel
from bastion.samples.service import NewEmbedding, NewSample, SampleService
from bastion.samples.tables import IMAGE, IMPORT
from tests.support.media import encode
from tests.support.spam_images import samples

SPAM_LABEL = "Contact Information"
"""The taxonomy label of contact spam (an L2 label of ``Illegal Ads``)."""
BATCH = 16


@dataclass(frozen=True)
class LabelledImage:
    """One JPEG file, whether it is spam, when it was labelled, and its embedding."""

    data: bytes
    spam: bool
    taken_at: datetime
    embedding: np.ndarray


@dataclass(frozen=True)
class SpamSet:
    """Labelled images and the embedding model their vectors are of."""

    images: list[LabelledImage]
    model: EmbeddingModel
    analyzer: str


def spam_images(engine: Engine, n_photos: int, per_photo: int, *, seed: int = 0) -> SpamSet:
    """``per_photo`` variants of ``n_photos`` photos, half of them spam, later photos
    labelled later, each embedded as the samples' embedder would."""
    analyzer = engine.analyzers["labels"]
    made = list(samples(n_photos, per_photo, seed=seed))
    files = [encode(s.rgb, "JPEG", quality=90) for s in made]
    vectors: list[np.ndarray] = []
    for start in range(0, len(files), BATCH):
        chunk = files[start : start + BATCH]
        frames = [decode_image(f, engine.settings.limits).frames[0] for f in chunk]
        outputs = analyzer.analyze([analyzer.preprocess(f) for f in frames])
        for out in outputs:
            assert out.embedding is not None
            vectors.append(np.asarray(out.embedding, dtype=np.float32).reshape(-1))
    images = [
        LabelledImage(data=f, spam=s.spam, taken_at=s.taken_at, embedding=v)
        for f, s, v in zip(files, made, vectors, strict=True)
    ]
    return SpamSet(images, EmbeddingModel(analyzer.model_name, analyzer.version), analyzer.name)


def add_samples(
    service: SampleService,
    tenant: str,
    spam: SpamSet,
    images: Sequence[LabelledImage] | None = None,
    *,
    label: str = SPAM_LABEL,
) -> list[str]:
    """Store ``images`` (default: all of ``spam``'s) as ``tenant``'s imported samples,
    spam labelled ``label`` and blocked, the rest unlabelled and allowed; their ids."""
    ids = []
    for image in spam.images if images is None else images:
        sha, _ = service.media.put(image.data)
        sample = service.add(
            NewSample(
                tenant_id=tenant,
                labels=[label] if image.spam else [],
                decision="block" if image.spam else "allow",
                source=IMPORT,
                taken_by="cli:tests",
                taken_at=image.taken_at,
                media_sha256=sha,
                media_kind=IMAGE,
                media_format="JPEG",
                embeddings=[NewEmbedding(spam.model, spam.analyzer, image.embedding)],
            ),
            consent=False,
        )
        ids.append(sample.id)
    return ids
