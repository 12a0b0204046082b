"""What the tests share: the app harness, a webhook receiver, media, databases.

- :mod:`~tests.support.app`: the app under test, in process (``running``) or on a real
  uvicorn server on loopback (``serving``), with a client, its services and API helpers.
- :mod:`~tests.support.settings`: settings of test apps and workers (data dir, admin key,
  database, job queue: ``JobBackend``) and the YAML config file a worker process reads.
- :mod:`~tests.support.auth`: the test admin key and the headers that present a key.
- :mod:`~tests.support.webhooks`: a webhook receiver on loopback, with scripted answers.
- :mod:`~tests.support.databases`: SQLite, PostgreSQL and RabbitMQ for tests, and what a
  test does when a service or program is missing (``REQUIRE_TEST_SERVICES``).
- :mod:`~tests.support.loopback`: free ports on loopback.
- :mod:`~tests.support.media`: real photos, encoded images, photos with a QR code or text.
- :mod:`~tests.support.textimages`: photos with text in the languages OCR must read.
- :mod:`~tests.support.video`: generated videos (cuts, QR codes, noise), real clips.
- :mod:`~tests.support.speech`: sentences spoken by espeak-ng, encoded as audio files and
  muxed into videos; speech at known times.
- :mod:`~tests.support.timecoded`: videos whose frames show which second they belong to.
- :mod:`~tests.support.animations`: huge animations (GIF, APNG, WebP, TIFF) built fast.
- :mod:`~tests.support.hostile`: the responsiveness probe and hostile documents.
- :mod:`~tests.support.jobs`: job policies and waiting for a job.
- :mod:`~tests.support.dedup`: de-duplication test settings and the stored results.
- :mod:`~tests.support.rules`: the live rule set and the words and domains it blocks.
- :mod:`~tests.support.live_server`: nginx-rtmp on loopback and ffmpeg publishers.
- :mod:`~tests.support.analyzer_contract`: the checks every analyzer's tests inherit.
- :mod:`~tests.support.people`: people's accounts and signing in to the portal.
- :mod:`~tests.support.browser`: the portal in Debian Chromium driven by Playwright.
- :mod:`~tests.support.spam_images`: ad-like spam and clean pictures for tenant heads.
- :mod:`~tests.support.labelled`: labelled samples with real embeddings of those.
- :mod:`~tests.support.heads`: small heads made fast, registered for a tenant.
- :mod:`~tests.support.training`: labelled folders on disk and following a training run.

Fixtures stay in ``tests/conftest.py``; test modules import helpers from here, never
from each other.
"""
