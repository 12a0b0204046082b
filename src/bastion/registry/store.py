"""The model registry: tenant heads as MLflow runs and registered model versions.

Every head a tenant trains is one MLflow run in the tenant's experiment
(``<prefix>.<tenant>``) with its parameters, metrics, report, charts and ONNX file,
and one version of the tenant's registered model for the category
(``<prefix>.<tenant>.<category-slug>``), tagged with the tenant, the category, the
embedding model, the threshold and the file's sha256, and, for a head a training run
made, the run's id (``bastion.training_run``): a run taken again after its worker died
finds the version it registered (:meth:`ModelRegistry.version_for_run`) instead of
registering another. The ``champion`` alias names the
version a tenant's requests are scored with, ``challenger`` one scored in shadow;
aliases replace MLflow's old stages. A version is fetched as ``models:/<name>/<version>``
after its alias is resolved, so what is checked is what is loaded, and its bytes must
hash to the sha256 it was registered with.

By default the store is local (``<data_dir>/mlflow``: SQLite and an artifacts folder).
MLflow never reaches the network on its own here: its telemetry is switched off before
it is imported (``MLFLOW_DISABLE_TELEMETRY``), and it talks only to the configured
tracking URI.

Every method blocks (database and file work): callers run them in a thread. ``mlflow``
is imported on first use, not when Bastion starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.analyzers.base import AnalyzerInfo
from bastion.registry.config import RegistryConfig
from bastion.registry.errors import HeadNotFound, HeadRefused, RegistryError
from bastion.registry.heads import ALIASES, HeadRef, load_head

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

HEAD_DIR = "head"
HEAD_FILE = "head.onnx"
REPORT_FILE = "report.json"
CHARTS_DIR = "charts"
TENANT_HEAD_KIND = "tenant_head"
TRAINING_RUN_TAG = "bastion.training_run"
"""The tag of an MLflow run and model version naming the training run that made it."""
_CHART_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}$")
_PAGE = 1000

# What MLflow reads from the environment to stay off the network and quiet.
MLFLOW_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def import_mlflow() -> Any:
    """``mlflow``, imported with its telemetry off (set before the import, which starts
    it, and applied again in case something imported MLflow earlier)."""
    os.environ.update(MLFLOW_ENVIRONMENT)
    import mlflow
    from mlflow.telemetry import set_telemetry_client

    set_telemetry_client()  # re-reads the switch: no client, no thread, no requests
    return mlflow


@dataclass(frozen=True, slots=True)
class HeadVersion:
    """One registered version of a tenant's head."""

    tenant: str
    category: str
    name: str
    version: int
    run_id: str | None
    sha256: str
    threshold: float | None
    embedding_model: str | None
    aliases: tuple[str, ...]
    created_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    """The run's metrics (what ``log_head`` was given)."""

    @property
    def ref(self) -> HeadRef:
        return HeadRef(self.tenant, self.category, self.name, self.version)

    @property
    def uri(self) -> str:
        """The version as MLflow addresses it."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class AliasedHead:
    """A tenant's registered head for a category and the versions its aliases name."""

    tenant: str
    category: str
    name: str
    aliases: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class BuiltInModel:
    """A model Bastion ships, as the registry lists it beside the tenants' heads."""

    analyzer: str
    type: str
    model: str
    version: str
    categories: tuple[str, ...]


class ModelRegistry:
    """Tenant heads in MLflow: log, list, alias and fetch them (blocking calls).

    ``analyzers`` gives the loaded analyzers' descriptions, for :meth:`built_in_models`.
    """

    def __init__(
        self,
        config: RegistryConfig,
        data_dir: Path,
        *,
        analyzers: Callable[[], Sequence[AnalyzerInfo]] | None = None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.tracking_uri = config.resolved_tracking_uri(data_dir)
        self._artifacts = config.resolved_artifact_location(data_dir)
        self._analyzers = analyzers
        self._client_obj: MlflowClient | None = None
        self._lock = threading.Lock()

    # ---- names -------------------------------------------------------------
    def model_name(self, tenant: str, category: str) -> str:
        return self.config.model_name(tenant, category)

    def uri(self, tenant: str, category: str, alias: str) -> str:
        """``models:/<name>@<alias>``: what the alias stands for."""
        return f"models:/{self.model_name(tenant, category)}@{alias}"

    # ---- writing -----------------------------------------------------------
    def log_head(
        self,
        tenant: str,
        category: str,
        onnx_bytes: bytes,
        params: Mapping[str, object],
        metrics: Mapping[str, float],
        report: Mapping[str, Any],
        charts: Mapping[str, bytes] | None = None,
        *,
        description: str | None = None,
        training_run: str | None = None,
    ) -> HeadVersion:
        """Log a trained head as a run of ``tenant``'s experiment and register it as a
        new version of the tenant's model for ``category``.

        ``training_run`` (the id of the training run that made the head) is kept as the
        :data:`TRAINING_RUN_TAG` tag of the MLflow run and of the version, so a retry of
        that training run finds the version (:meth:`version_for_run`).

        The head is checked first (:func:`~bastion.registry.heads.load_head`: a head by
        the contract, for this category, passing its dry run); a head that fails is
        refused before anything is written. A run that fails halfway is marked failed and
        registers no version. ``charts`` are files (``pr_curve.png``, ...) kept under
        ``charts/``.
        """
        name = self.model_name(tenant, category)
        sha = hashlib.sha256(onnx_bytes).hexdigest()
        checked = load_head(onnx_bytes, HeadRef(tenant, category, name, 0), sha256=sha)
        for chart in charts or {}:
            if not _CHART_NAME.fullmatch(chart):
                raise RegistryError(f"not a chart file name: {chart!r}", status=422)
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        if bad:
            raise RegistryError(f"metrics that are not finite numbers: {bad}", status=422)
        tags = {
            "bastion.tenant": tenant,
            "bastion.category": category,
            "bastion.sha256": sha,
            "bastion.threshold": repr(checked.threshold),
            "bastion.embedding_model": checked.embedding_model or "",
            "bastion.embedding_version": checked.embedding_version or "",
        }
        if training_run is not None:
            tags[TRAINING_RUN_TAG] = training_run
        client = self._client()
        mlflow = import_mlflow()
        entities = mlflow.entities
        with self._mlflow_errors():
            experiment = self._experiment_id(tenant)
            run = client.create_run(experiment, tags={**tags, "mlflow.runName": name})
        run_id = run.info.run_id
        try:
            client.log_batch(
                run_id,
                metrics=[
                    entities.Metric(k, float(v), _now_ms(), 0) for k, v in sorted(metrics.items())
                ],
                params=[entities.Param(k, str(v)) for k, v in sorted(params.items())],
            )
            with tempfile.TemporaryDirectory(prefix="bastion-head-") as tmp:
                folder = Path(tmp)
                (folder / HEAD_DIR).mkdir()
                (folder / HEAD_DIR / HEAD_FILE).write_bytes(onnx_bytes)
                (folder / REPORT_FILE).write_text(
                    json.dumps(report, indent=2, sort_keys=True, default=str), encoding="utf-8"
                )
                if charts:
                    (folder / CHARTS_DIR).mkdir()
                    for chart, data in charts.items():
                        (folder / CHARTS_DIR / chart).write_bytes(data)
                client.log_artifacts(run_id, tmp)
            self._ensure_model(tenant, category, name, description)
            mv = client.create_model_version(
                name,
                source=f"{run.info.artifact_uri.rstrip('/')}/{HEAD_DIR}",
                run_id=run_id,
                tags=tags,
                description=description,
            )
            client.set_terminated(run_id, "FINISHED")
        except Exception as exc:
            with _quiet():
                client.set_terminated(run_id, "FAILED")
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"logging the head failed: {type(exc).__name__}: {exc}") from exc
        log.info("registered %s version %s (run %s)", name, mv.version, run_id)
        return self._version(mv, dict(metrics))

    def set_alias(self, tenant: str, category: str, alias: str, version: int) -> HeadVersion:
        """Point ``alias`` (``champion`` or ``challenger``) of ``tenant``'s head for
        ``category`` at ``version``; every moderating process follows within
        ``refresh_s``."""
        _check_alias(alias)
        name = self.model_name(tenant, category)
        client = self._client()
        with self._mlflow_errors(f"{name} version {version}"):
            client.get_model_version(name, str(version))
            client.set_registered_model_alias(name, alias, str(version))
            mv = client.get_model_version(name, str(version))
        log.info("%s@%s is now version %s", name, alias, version)
        return self._version(mv)

    def remove_alias(self, tenant: str, category: str, alias: str) -> None:
        """Take ``alias`` off whichever version has it (nothing served under it then)."""
        _check_alias(alias)
        name = self.model_name(tenant, category)
        with self._mlflow_errors(f"{name}@{alias}"):
            self._client().delete_registered_model_alias(name, alias)

    # ---- reading -----------------------------------------------------------
    def versions(self, tenant: str, category: str) -> list[HeadVersion]:
        """Every version of ``tenant``'s head for ``category``, newest first, with its
        aliases and its run's metrics."""
        name = self.model_name(tenant, category)
        client = self._client()
        out: list[HeadVersion] = []
        with self._mlflow_errors(name):
            aliases: dict[int, list[str]] = {}
            for alias, number in (client.get_registered_model(name).aliases or {}).items():
                aliases.setdefault(int(number), []).append(alias)
            for mv in _pages(
                lambda token: client.search_model_versions(
                    f"name = '{name}'", max_results=_PAGE, page_token=token
                )
            ):
                found = self._version(mv, self._run_metrics(mv.run_id))
                named = tuple(sorted({*found.aliases, *aliases.get(found.version, [])}))
                out.append(dataclasses.replace(found, aliases=named))
        out.sort(key=lambda v: -v.version)
        return out

    def version_for_run(
        self, tenant: str, category: str, training_run_id: str
    ) -> HeadVersion | None:
        """The version of ``tenant``'s head for ``category`` that training run
        ``training_run_id`` registered (its :data:`TRAINING_RUN_TAG` tag), with its run's
        metrics; None when it registered none. Were there several (two workers that
        both thought the run theirs), the first is the run's."""
        name = self.model_name(tenant, category)
        client = self._client()
        with self._mlflow_errors(name):
            found = [
                mv
                for mv in _pages(
                    lambda token: client.search_model_versions(
                        f"name = '{name}'", max_results=_PAGE, page_token=token
                    )
                )
                if (mv.tags or {}).get(TRAINING_RUN_TAG) == training_run_id
            ]
        if not found:
            return None
        first = min(found, key=lambda mv: int(mv.version))
        return self._version(first, self._run_metrics(first.run_id))

    def alias_version(self, tenant: str, category: str, alias: str) -> int | None:
        """The version ``alias`` names, or None."""
        _check_alias(alias)
        name = self.model_name(tenant, category)
        try:
            with self._mlflow_errors(name):
                aliases = self._client().get_registered_model(name).aliases or {}
        except HeadNotFound:
            return None
        version = aliases.get(alias)
        return int(version) if version is not None else None

    def resolve(self, tenant: str, category: str, alias: str) -> tuple[HeadVersion, bytes]:
        """The version ``models:/<name>@<alias>`` names, and its ONNX file, checked
        against the sha256 it was registered with (:class:`HeadRefused` if not)."""
        version = self.alias_version(tenant, category, alias)
        if version is None:
            raise HeadNotFound(f"not in the registry: {self.uri(tenant, category, alias)}")
        return self.fetch(tenant, category, version)

    def fetch(self, tenant: str, category: str, version: int) -> tuple[HeadVersion, bytes]:
        """Version ``version`` and its ONNX file, checked like :meth:`resolve`."""
        name = self.model_name(tenant, category)
        with self._mlflow_errors(f"{name} version {version}"):
            mv = self._client().get_model_version(name, str(version))
        return self._fetch(self._version(mv))

    def report(self, tenant: str, category: str, version: int) -> dict[str, Any] | None:
        """The report logged with ``version`` (``report.json`` of its run), or None when
        its run has none (or the version has no run)."""
        name = self.model_name(tenant, category)
        client = self._client()
        with self._mlflow_errors(f"{name} version {version}"):
            run_id = client.get_model_version(name, str(version)).run_id
        if not run_id:
            return None
        with (
            tempfile.TemporaryDirectory(prefix="bastion-report-") as tmp,
            self._mlflow_errors(f"the report of {name} version {version}"),
        ):
            if REPORT_FILE not in {a.path for a in client.list_artifacts(run_id)}:
                return None
            path = Path(client.download_artifacts(run_id, REPORT_FILE, tmp))
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise RegistryError(f"the report of {name} version {version} is not JSON") from exc
        return data if isinstance(data, dict) else None

    def aliased_heads(self) -> list[AliasedHead]:
        """Every tenant's registered heads and their aliases, in one listing (what each
        process's watcher reads every ``refresh_s``). A registered model whose name is not
        the one its tenant and category tags give is left out: a head serves only the
        tenant its name is for."""
        prefix = self.config.model_prefix
        client = self._client()
        out: list[AliasedHead] = []
        with self._mlflow_errors():
            models = list(
                _pages(
                    lambda token: client.search_registered_models(
                        f"name LIKE '{prefix}.%'", max_results=_PAGE, page_token=token
                    )
                )
            )
        for rm in models:
            tenant = rm.tags.get("bastion.tenant", "")
            category = rm.tags.get("bastion.category", "")
            try:
                expected = self.model_name(tenant, category)
            except (KeyError, ValueError):
                continue
            if expected != rm.name:
                continue
            aliases = {a: int(v) for a, v in (rm.aliases or {}).items() if a in ALIASES}
            out.append(AliasedHead(tenant, category, rm.name, aliases))
        return out

    def built_in_models(self) -> list[BuiltInModel]:
        """The models Bastion ships and runs in this process, with their versions (the
        registry's tenant heads are listed by :meth:`versions`)."""
        infos = self._analyzers() if self._analyzers is not None else []
        return [
            BuiltInModel(i.name, i.type, i.model, i.version, tuple(i.categories))
            for i in infos
            if i.type != TENANT_HEAD_KIND
        ]

    # ---- internals ---------------------------------------------------------
    def _client(self) -> MlflowClient:
        with self._lock:
            if self._client_obj is None:
                mlflow = import_mlflow()
                if not self.config.tracking_uri:
                    (self.data_dir / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
                self._client_obj = mlflow.MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            return self._client_obj

    def _experiment_id(self, tenant: str) -> str:
        client = self._client()
        name = self.config.experiment_name(tenant)
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(
                client.create_experiment(
                    name, artifact_location=self._artifacts, tags={"bastion.tenant": tenant}
                )
            )
        except Exception:  # another process made it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _ensure_model(self, tenant: str, category: str, name: str, description: str | None) -> None:
        client = self._client()
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
            return
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            client.create_registered_model(
                name,
                tags={"bastion.tenant": tenant, "bastion.category": category},
                description=description or f"{category} head of tenant {tenant}",
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _fetch(self, version: HeadVersion) -> tuple[HeadVersion, bytes]:
        """The version's ONNX file, from where the registry says the version is."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        client = self._client()
        with (
            tempfile.TemporaryDirectory(prefix="bastion-head-") as tmp,
            self._mlflow_errors(f"{version.name} version {version.version}"),
        ):
            source = client.get_model_version_download_uri(version.name, str(version.version))
            repo = get_artifact_repository(
                source, tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
            data = Path(repo.download_artifacts(HEAD_FILE, dst_path=tmp)).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if not version.sha256 or digest != version.sha256:
            raise HeadRefused(
                f"{version.name} version {version.version}: the ONNX file does not match "
                f"its registered sha256; it is not loaded",
                details={"model": version.name, "version": version.version},
            )
        return version, data

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        try:
            return dict(self._client().get_run(run_id).data.metrics)
        except Exception:  # a deleted run: the version is still listed
            return {}

    def _version(self, mv: ModelVersion, metrics: Mapping[str, float] | None = None) -> HeadVersion:
        tags = dict(mv.tags or {})
        threshold = tags.get("bastion.threshold")
        return HeadVersion(
            tenant=tags.get("bastion.tenant", ""),
            category=tags.get("bastion.category", ""),
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id,
            sha256=tags.get("bastion.sha256", ""),
            threshold=float(threshold) if threshold else None,
            embedding_model=tags.get("bastion.embedding_model") or None,
            aliases=tuple(sorted(mv.aliases or ())),
            created_at=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC),
            tags=tags,
            metrics=dict(metrics or {}),
        )

    def _mlflow_errors(self, what: str = "") -> AbstractContextManager[None]:
        return _mlflow_errors(what)


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """MLflow's exceptions as Bastion's: a missing model, version or alias is
    :class:`HeadNotFound`, anything else :class:`RegistryError`."""
    try:
        yield
    except RegistryError:
        raise
    except OSError as exc:
        raise RegistryError(f"registry: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if not isinstance(exc, MlflowException):
            raise
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise HeadNotFound(f"not in the registry: {what or exc.message}") from None
        raise RegistryError(f"registry: {exc.message}") from exc


@contextmanager
def _quiet() -> Iterator[None]:
    """Log and swallow what a clean-up step raises."""
    try:
        yield
    except Exception as exc:
        log.warning("registry clean-up failed: %s", exc)


def _pages(call: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = call(token)
        yield from page
        token = page.token
        if not token:
            return


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; use one of {list(ALIASES)}", status=422)


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
