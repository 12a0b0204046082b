"""Analyzers' models as Ray Serve deployments (``runtime.backend: ray``).

Each served analyzer is a Serve application of its own (``ray.app_prefix`` + its name)
with one deployment, :class:`AnalyzerReplica`: every replica builds the same analyzer
from the same configuration, loads it, and answers batches gathered by ``@serve.batch``
with ``analyzer.analyze(batch)`` in a worker thread. Bastion's processes preprocess
items as they always do and hand them to a :class:`RayRunner`, which calls the
deployment's handle with a deadline: a replica that dies is replaced by Serve, the item
is sent once more (``ray.retries``), and an item that still gets no answer fails with
``model_unavailable`` (503), never hangs.

A development Ray (``ray.address`` unset) is started in this process by
:func:`start_local_ray`: every server bound to the loopback interface, on free ports
(Ray's default GCS port is Redis's 6379), no dashboard, no HTTP proxy, and token
authentication off (``RAY_AUTH_MODE=disabled``, unless the environment says otherwise).
For a real cluster, which ``ray start`` starts with token authentication on, export
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``), or set
``ray.auth_token_path``.

Only this module imports ``ray`` (the ``ray`` extra); the engine imports it only when
the backend is ``ray``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import serve
from ray._private.worker import RayContext
from ray.exceptions import RayActorError, WorkerCrashedError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

from bastion.analyzers.base import AnalyzerConfig
from bastion.errors import ModelUnavailable
from bastion.results import AnalyzerOutput
from bastion.runtime.config import RayConfig, RayDeployment, RuntimeConfig

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
REPLICA_CLASS = "AnalyzerReplica"

_RETRYABLE: tuple[type[BaseException], ...] = (
    RayActorError,  # the replica died (ActorDiedError) or cannot be reached for now
    WorkerCrashedError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)


# ---------------------------------------------------------------- the replica
class AnalyzerReplica:
    """One replica of an analyzer's deployment: the analyzer built from its configuration
    and loaded, answering batches of preprocessed items."""

    def __init__(
        self, analyzer: dict[str, Any], runtime: dict[str, Any], batching: dict[str, Any]
    ) -> None:
        from bastion.analyzers import RuntimeContext, registry

        _keep_replica_servers_on_loopback()
        kind = registry()[analyzer["type"]]
        config = kind.config_model.model_validate(analyzer)
        context = RuntimeContext(RuntimeConfig.model_validate(runtime))
        self._analyzer = kind(config, context)
        self._analyzer.load()
        self._sizes: deque[int] = deque(maxlen=4096)

        async def run_batch(items: list[Any]) -> list[AnalyzerOutput]:
            self._sizes.append(len(items))
            return await asyncio.to_thread(self._analyzer.analyze, items)

        self._batched = serve.batch(
            max_batch_size=batching["max_batch_size"],
            batch_wait_timeout_s=batching["batch_wait_timeout_s"],
            max_concurrent_batches=batching["max_concurrent_batches"],
        )(run_batch)

    async def __call__(self, item: Any) -> AnalyzerOutput:
        """The analyzer's output for one preprocessed item."""
        out: AnalyzerOutput = await self._batched(item)
        return out

    def stats(self) -> dict[str, Any]:
        """This replica's id, process, execution provider and the sizes of its recent
        batches (oldest first)."""
        context = serve.get_replica_context()
        return {
            "replica": context.replica_id.unique_id,
            "pid": os.getpid(),
            "provider": self._analyzer.provider,
            "batch_sizes": list(self._sizes),
        }

    def reset_stats(self) -> None:
        """Forget the batch sizes seen so far."""
        self._sizes.clear()


def _keep_replica_servers_on_loopback() -> None:
    """On a loopback node (the development Ray), make this replica's inter-deployment gRPC
    server listen on loopback too: Serve binds it to every interface (``[::]:0``) once the
    replica is built, whatever the node's address. Elsewhere, nothing changes."""
    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    if not ipaddress.ip_address(node_ip).is_loopback:
        return
    from ray.serve._private import replica

    bind: Any = replica.add_port_to_grpc_server  # type: ignore[attr-defined]

    def on_loopback(server: Any, address: str) -> int:
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = f"{LOOPBACK}:{address.rsplit(':', 1)[1]}"
        port: int = bind(server, address)
        return port

    replica.add_port_to_grpc_server = on_loopback  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the runner
class RayRunner:
    """Submits items to an analyzer's deployment (a :class:`ModelRunner`)."""

    def __init__(self, name: str, handle: Any, *, timeout_s: float, retries: int) -> None:
        self.name = name
        self._handle = handle
        self._timeout_s = timeout_s
        self._retries = retries
        self._inflight = 0

    @property
    def depth(self) -> int:
        return self._inflight

    async def submit(self, item: Any) -> AnalyzerOutput:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        self._inflight += 1
        try:
            last: BaseException | None = None
            for attempt in range(self._retries + 1):
                response: Any = None
                try:
                    response = self._handle.remote(item)
                    out: AnalyzerOutput = await asyncio.wait_for(
                        _answer(response), max(0.0, deadline - loop.time())
                    )
                    return out
                except TimeoutError as exc:
                    if response is not None:
                        response.cancel()
                    raise ModelUnavailable(
                        f"analyzer {self.name!r} on Ray Serve gave no answer within "
                        f"{self._timeout_s:g} s",
                        details={"analyzer": self.name, "attempts": attempt + 1},
                    ) from exc
                except _RETRYABLE as exc:
                    last = exc
                    log.warning(
                        "analyzer %s: replica unavailable (attempt %d): %s",
                        self.name,
                        attempt + 1,
                        type(exc).__name__,
                    )
            raise ModelUnavailable(
                f"analyzer {self.name!r} on Ray Serve is unavailable: its replicas died or "
                f"could not be reached ({type(last).__name__})",
                details={"analyzer": self.name, "attempts": self._retries + 1},
            ) from last
        finally:
            self._inflight -= 1

    async def close(self) -> None:
        """Nothing to release: the deployment outlives this process's handle."""


async def _answer(response: Any) -> Any:
    return await response


def _text(value: Any) -> str:
    """An enum's value (Serve's statuses: ``RUNNING``), anything else as text."""
    return str(getattr(value, "value", value))


# ---------------------------------------------------------------- the cluster
@dataclass(frozen=True, slots=True)
class LocalRay:
    """A development Ray started in this process."""

    gcs_address: str
    node_ip: str


def start_local_ray(*, num_cpus: int | None = None, namespace: str = "bastion") -> LocalRay:
    """Start a Ray of this process's own for development: every server on the loopback
    interface, the GCS on a free port (not 6379, where Redis listens), no dashboard, and
    token authentication off unless ``RAY_AUTH_MODE`` says otherwise. It stops with
    :func:`ray.shutdown` or when this process ends."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray swaps a loopback node address for the machine's outward address (and its servers
    # then listen on every interface) unless it takes the machine to be a single-node
    # development box, which is what this setting tells it.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ.pop("RAY_GCS_SERVER_PORT", None)  # 0: a free port chosen by the GCS
    context = ray.init(
        num_cpus=num_cpus,
        namespace=namespace,
        include_dashboard=False,
        _node_ip_address=LOOPBACK,
        configure_logging=False,
        log_to_driver=False,
    )
    assert isinstance(context, RayContext)
    info = context.address_info
    return LocalRay(gcs_address=str(info["gcs_address"]), node_ip=str(info["node_ip_address"]))


def connect(config: RayConfig) -> bool:
    """Connect this process to Ray as ``config`` says; True when it started a local Ray
    (which it then owns). A process already connected stays on its cluster."""
    if ray.is_initialized():
        serve.start(proxy_location="Disabled")  # no HTTP proxy: handles only
        return False
    if config.auth_token_path is not None:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(config.auth_token_path)
    if config.address is None:
        local = start_local_ray(num_cpus=config.local_num_cpus, namespace=config.namespace)
        log.info("started a local Ray for development at %s", local.gcs_address)
        owned = True
    else:
        ray.init(
            address=config.address,
            namespace=config.namespace,
            configure_logging=False,
            log_to_driver=False,
        )
        owned = False
    serve.start(proxy_location="Disabled")
    return owned


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """One analyzer's application on the cluster, as ``bastion models serve`` shows it."""

    analyzer: str
    app: str
    status: str
    replicas: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class RayModels:
    """The Ray Serve deployments of one process's analyzers: connects to Ray, deploys,
    reports their state and makes runners for them."""

    runtime: RuntimeConfig
    _owned: bool = False
    _connected: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def config(self) -> RayConfig:
        return self.runtime.ray

    def serves(self, analyzer: str) -> bool:
        """Whether ``analyzer`` runs on Ray."""
        return self.config.serves(analyzer)

    def app_name(self, analyzer: str) -> str:
        return f"{self.config.app_prefix}{analyzer}"

    def connect(self) -> None:
        """Connect to Ray once (blocking: starting a local Ray takes seconds)."""
        with self._lock:
            if not self._connected:
                self._owned = connect(self.config)
                self._connected = True

    def replica_runtime(self, options: RayDeployment) -> RuntimeConfig:
        """The runtime settings a replica builds its analyzer with: its own GPU memory cap,
        as many onnxruntime threads as it has CPUs (unless set), the models in-process."""
        threads = self.runtime.intra_op_threads or max(1, round(options.num_cpus))
        return self.runtime.model_copy(
            update={
                "backend": "local",
                "gpu_mem_limit_mb": options.gpu_mem_limit_mb,
                "intra_op_threads": threads,
            }
        )

    def deploy(self, name: str, analyzer: AnalyzerConfig) -> None:
        """Deploy (or update) analyzer ``name``'s application and wait until it runs."""
        self.connect()
        options = self.config.options_for(name)
        deployment = serve.deployment(name=REPLICA_CLASS, **options.serve_options())(
            AnalyzerReplica
        )
        batching = {
            "max_batch_size": options.max_batch_size,
            "batch_wait_timeout_s": options.batch_wait_timeout_s,
            "max_concurrent_batches": options.max_concurrent_batches,
        }
        app = deployment.bind(
            analyzer.model_dump(mode="json"),
            self.replica_runtime(options).model_dump(mode="json"),
            batching,
        )
        started = time.monotonic()
        target = serve.RunTarget(app, name=self.app_name(name), route_prefix=None)
        serve.run_many(
            [target],
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )
        # Serve waits for ever for resources a replica cannot get: wait with a deadline
        while True:
            state = self.states([name])[0]
            if state.status == "RUNNING":
                break
            if state.status == "DEPLOY_FAILED":
                raise ModelUnavailable(
                    f"analyzer {name!r} failed to deploy on Ray Serve: {state.message}"
                )
            if time.monotonic() - started > self.config.deploy_timeout_s:
                raise ModelUnavailable(
                    f"analyzer {name!r} is not running on Ray Serve after "
                    f"{self.config.deploy_timeout_s:g} s ({state.status}; replicas "
                    f"{state.replicas or 'none'}): are there the CPUs/GPUs its replicas "
                    f"ask for? {state.message}".strip()
                )
            time.sleep(0.2)
        log.info("deployed %s on Ray Serve in %.1f s", name, time.monotonic() - started)

    def states(self, names: list[str] | None = None) -> list[DeploymentState]:
        """The state of each analyzer's application (of ``names``, or all of Bastion's)."""
        self.connect()
        apps = serve.status().applications
        prefix = self.config.app_prefix
        if names is None:
            names = sorted(a.removeprefix(prefix) for a in apps if a.startswith(prefix))
        out: list[DeploymentState] = []
        for name in names:
            app = apps.get(self.app_name(name))
            if app is None:
                out.append(DeploymentState(name, self.app_name(name), "NOT_DEPLOYED"))
                continue
            dep = app.deployments.get(REPLICA_CLASS)
            replicas = {_text(k): int(v) for k, v in (dep.replica_states if dep else {}).items()}
            out.append(
                DeploymentState(
                    name,
                    self.app_name(name),
                    _text(app.status),
                    replicas,
                    app.message or (dep.message if dep else ""),
                )
            )
        return out

    def runner(self, name: str, analyzer: AnalyzerConfig) -> RayRunner:
        """A runner for analyzer ``name`` (blocking). On a development Ray it is deployed
        first when it is not running; on a cluster it must have been deployed
        (``bastion models serve``), else ``model_unavailable``."""
        self.connect()
        state = self.states([name])[0]
        if state.status != "RUNNING":
            if self.config.address is None:
                self.deploy(name, analyzer)
            elif state.status == "NOT_DEPLOYED":
                raise ModelUnavailable(
                    f"analyzer {name!r} is not deployed on the Ray cluster at "
                    f"{self.config.address}: run `bastion models serve --ray-address "
                    f"{self.config.address}`"
                )
        handle = serve.get_deployment_handle(REPLICA_CLASS, self.app_name(name))
        return RayRunner(
            name, handle, timeout_s=self.config.request_timeout_s, retries=self.config.retries
        )

    async def replica_stats(self, name: str, calls: int = 8) -> dict[str, dict[str, Any]]:
        """Each reachable replica's :meth:`AnalyzerReplica.stats`, by replica id, gathered
        over ``calls`` calls (Serve spreads them over the replicas)."""
        handle = serve.get_deployment_handle(REPLICA_CLASS, self.app_name(name))
        found: dict[str, dict[str, Any]] = {}
        for _ in range(calls):
            stats: dict[str, Any] = await asyncio.wait_for(
                _answer(handle.stats.remote()), self.config.request_timeout_s
            )
            found[stats["replica"]] = stats
        return found

    async def reset_stats(self, name: str, calls: int = 8) -> None:
        """Forget the batch sizes the replicas have seen (best effort over ``calls``)."""
        handle = serve.get_deployment_handle(REPLICA_CLASS, self.app_name(name))
        for _ in range(calls):
            await asyncio.wait_for(
                _answer(handle.reset_stats.remote()), self.config.request_timeout_s
            )

    def delete(self, name: str, *, wait: bool = True) -> None:
        """Remove analyzer ``name``'s application from the cluster (``wait``: until gone)."""
        self.connect()
        serve.delete(self.app_name(name), _blocking=wait)

    def close(self) -> None:
        """Shut down a local Ray this object started; a cluster's deployments stay."""
        with self._lock:
            if self._owned and ray.is_initialized():
                ray.shutdown()  # the local Ray, and Serve on it, end here
            self._owned = False
            self._connected = False


def serve_all(
    runtime: RuntimeConfig, analyzers: Mapping[str, AnalyzerConfig]
) -> tuple[RayModels, list[DeploymentState]]:
    """Deploy every analyzer of ``analyzers`` that runs on Ray (blocking); the models
    object (close it) and their states."""
    models = RayModels(runtime)
    names = [n for n in analyzers if models.serves(n)]
    for name in names:
        models.deploy(name, analyzers[name])
    return models, models.states(names)
