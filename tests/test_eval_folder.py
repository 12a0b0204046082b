"""`bastion eval DIR`: what Bastion decides today measured on a labelled folder.

The folder holds real photos carrying contact spam (labelled ``Contact Information``)
and the same photos with an ordinary caption or none (labelled with nothing), from
``tests/support/spam_images.py``, moderated by the real models under a policy that
reviews ``Illegal Ads`` with a word list; beside them, files that must be reported
with their codes and never stop the run. The report's numbers are checked against a
count, by hand, of what the policy returned for each image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from typer.testing import CliRunner

from bastion.cli import app
from bastion.evaluation.config import EvalConfig
from bastion.evaluation.folder_eval import FolderReport, bootstrap_measures
from bastion.evaluation.runner import evaluate_folder
from bastion.pipeline.moderation import Moderation
from bastion.policy import taxonomy
from bastion.policy.loader import parse_policy
from bastion.policy.model import Policy
from bastion.results import ModerationResult
from tests.support.media import encode, photo
from tests.support.spam_images import samples

runner = CliRunner()

SPAM_LABEL = "Contact Information"
POLICY = """name: eval-spam
analyzers: [labels, ocr, codes]
rules:
  - name: ads
    categories: [Illegal Ads]
    review: 50
lists:
  blocked_words: [whatsapp, telegram, wechat, kakao, viber, line id, call, tel, phone, contact]
"""
# Every file that is not scored, and the code it must be reported with.
FAILING = {
    "broken.jpg": "corrupt_media",
    "notes.txt": "unsupported_media_type",
    "bad-json.jpg": "invalid_json",
    "odd-label.jpg": "unknown_label",
    "no-labels.jpg": "missing_labels",
    "orphan.json": "missing_media",
}
IMAGES = 8


def _labels(path: Path, labels: list[str]) -> None:
    path.with_suffix(".json").write_text(json.dumps({"labels": labels}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    (root / "spam").mkdir()
    (root / "clean").mkdir()
    for i, s in enumerate(samples(2, IMAGES // 2, seed=3)):
        path = root / ("spam" if s.spam else "clean") / f"{i:02d}.jpg"
        path.write_bytes(encode(s.rgb, quality=92))
        _labels(path, [SPAM_LABEL] if s.spam else [])
    good = photo("skimage-coffee")
    (root / "broken.jpg").write_bytes(good[:600])
    _labels(root / "broken.jpg", [])
    (root / "notes.txt").write_text("not an image")
    _labels(root / "notes.txt", [])
    (root / "bad-json.jpg").write_bytes(photo("skimage-chelsea"))
    (root / "bad-json.json").write_text('{"labels": ["Weapons"')
    (root / "odd-label.jpg").write_bytes(photo("skimage-rocket"))
    _labels(root / "odd-label.jpg", ["Not A Category"])
    (root / "no-labels.jpg").write_bytes(photo("skimage-astronaut"))
    (root / "orphan.json").write_text('{"labels": []}')
    (root / ".hidden.jpg").write_bytes(good)  # hidden files are left out
    return root


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "eval-spam.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def report(folder: Path, moderation: Moderation, policy: Policy) -> FolderReport:
    return await evaluate_folder(folder, moderation, policy, config=EvalConfig(resamples=500))


def _closure(names: list[str]) -> set[str]:
    return taxonomy.expand(names)


def _hand_count(
    category: str, truth: dict[str, list[str]], results: dict[str, ModerationResult]
) -> dict[str, int]:
    """tp/fp/fn/tn of ``category`` counted from each result's reasons, file by file."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for name, labels in truth.items():
        positive = category in _closure(labels)
        decided = any(category in _closure([r.label]) for r in results[name].reasons)
        key = ("t" if positive == decided else "f") + ("p" if decided else "n")
        counts[key] += 1
    return counts


@pytest.mark.models
async def test_report_matches_a_hand_count_of_the_policy_results(
    report: FolderReport, folder: Path, moderation: Moderation, policy: Policy
) -> None:
    truth: dict[str, list[str]] = {}
    results: dict[str, ModerationResult] = {}
    for sub in ("spam", "clean"):
        for path in sorted((folder / sub).glob("*.jpg")):
            name = f"{sub}/{path.name}"
            truth[name] = json.loads(path.with_suffix(".json").read_text())["labels"]
            results[name] = await moderation.moderate_bytes(path.read_bytes(), policy)
    assert report.images == IMAGES and report.failed == len(FAILING)
    assert report.files == IMAGES + len(FAILING)
    assert sorted(i.file for i in report.images_detail) == sorted(truth)
    for item in report.images_detail:
        assert item.decision == results[item.file].decision
        assert item.labels == truth[item.file]

    # the decision level: labelled images should be reviewed or blocked, clean allowed
    flagged = {n for n, r in results.items() if r.decision != "allow"}
    labelled = {n for n, labels in truth.items() if labels}
    assert report.decision.labelled == len(labelled) == IMAGES // 2
    for group, names in (("labelled", labelled), ("clean", set(truth) - labelled)):
        for d in ("allow", "review", "block"):
            assert report.decision.counts[group][d] == sum(
                1 for n in names if results[n].decision == d
            )
    cm = report.decision.flagged.confusion
    assert (cm.tp, cm.fp) == (len(flagged & labelled), len(flagged - labelled))
    assert (cm.fn, cm.tn) == (len(labelled - flagged), len(set(truth) - labelled - flagged))

    by_name = {c.category: c for c in report.categories}
    # an L1 category covers its L2 labels: labelled Contact Information, flagged by a
    # Blocked Word, is an Illegal Ads hit and a Contact Information miss
    for category in ("Illegal Ads", SPAM_LABEL, "Blocked Word"):
        c = by_name[category]
        assert c.decided.confusion.model_dump() == _hand_count(category, truth, results), category
        assert c.support == sum(1 for labels in truth.values() if category in _closure(labels))
        assert c.covered  # the ads rule covers the L1 and every L2 below it
        tp, fp, fn = (c.decided.confusion.tp, c.decided.confusion.fp, c.decided.confusion.fn)
        assert c.decided.precision.estimate == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert c.decided.recall.estimate == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        f1 = c.decided.f1
        assert f1.estimate == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        assert f1.low <= f1.estimate <= f1.high and f1.confidence == 0.95
    # the word list finds spam: real outcomes, not only arithmetic
    ads = by_name["Illegal Ads"].decided
    assert ads.confusion.tp >= 2 and ads.recall.estimate > 0.4
    assert by_name[SPAM_LABEL].decided.confusion.tp == 0  # no analyzer reports contacts
    assert by_name[SPAM_LABEL].support == IMAGES // 2
    for c in report.categories:  # every category found in either side
        found = any(c.category in _closure(labels) for labels in truth.values()) or any(
            c.category in {lab.name, lab.parent} for r in results.values() for lab in r.labels
        )
        assert found, c.category


@pytest.mark.models
async def test_broken_files_and_bad_labels_are_reported_with_codes(report: FolderReport) -> None:
    assert {f.file: f.code for f in report.failures} == FAILING
    counts: dict[str, int] = {}
    for code in FAILING.values():
        counts[code] = counts.get(code, 0) + 1
    assert report.failures_by_code == dict(sorted(counts.items()))
    assert all(f.message for f in report.failures)
    assert not any(".hidden" in i.file for i in report.images_detail)


@pytest.mark.models
def test_cli_prints_tables_and_writes_the_json_report(
    folder: Path, policy_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    res = runner.invoke(
        app,
        ["eval", str(folder), "--policy", str(policy_file), "--json", str(out)],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "Illegal Ads" in res.stdout and "corrupt_media" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["policy"] == "eval-spam" and doc["images"] == IMAGES
    assert {f["file"]: f["code"] for f in doc["failures"]} == FAILING
    assert FolderReport.model_validate(doc).decision.labelled == IMAGES // 2


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".hidden.jpg").write_bytes(b"only hidden files")
    res = runner.invoke(app, ["eval", str(tmp_path)])
    assert res.exit_code == 2
    assert "empty_folder" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not_a_folder" in res.output


def test_an_unknown_policy_is_a_clear_error(folder: Path) -> None:
    res = runner.invoke(app, ["eval", str(folder), "--policy", "no-such-policy"])
    assert res.exit_code == 2 and "policy_not_found" in res.output


def test_a_folder_where_nothing_scores_exits_non_zero_with_the_report(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _labels(root / "a.jpg", [])
    policy = tmp_path / "hashes.yaml"
    policy.write_text("name: hashes-only\nanalyzers: [hashes]\n")
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["eval", str(root), "--policy", str(policy), "--json", str(out)])
    assert res.exit_code == 2 and "no_image_scored" in res.output
    doc = json.loads(out.read_text())
    assert doc["images"] == 0 and doc["failures_by_code"] == {"corrupt_media": 1}


def test_bootstrap_intervals_hold_the_estimate_and_leave_out_undefined_resamples() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((200, 2)) < 0.3
    predicted = truth ^ (rng.random((200, 2)) < 0.15)
    predicted[:, 1] = False  # nothing decided positive: precision undefined everywhere
    config = EvalConfig(resamples=300, seed=4)
    first, never = bootstrap_measures(truth, predicted, config)
    for value in (first.precision, first.recall, first.f1):
        assert value.low <= value.estimate <= value.high and value.resamples == 300
        assert value.high - value.low < 0.4
    assert never.precision.resamples == 0 and never.precision.estimate == 0.0
    assert never.recall.estimate == 0.0 and never.recall.high == 0.0
    assert bootstrap_measures(truth, predicted, config) == [first, never]  # seeded
