"""The jobs role's loop that runs training runs, each in a child process.

:class:`TrainingRunner` claims queued runs (and runs whose worker died, see
:mod:`bastion.training.runs`) one at a time and runs each in a child process
(``python -m bastion.training.child <run id> <claim token>``, the settings as JSON on
its standard input): training is CPU-heavy and must never hold the interpreter of the
process that claimed it, which with ``bastion up``'s embedded worker is the API's. The
child records the run's progress and outcome itself; this loop keeps the claim alive
(a heartbeat every third of ``training.lease_s``), stops a child past
``training.max_seconds`` (``training_timed_out``), turns a child that ended without an
outcome into a failed run (``training_process_failed``, with the end of what it wrote
on its standard error), and, when the process is stopping, stops the child and puts
the run back in the queue for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from pydantic import SecretStr
from pydantic_core import to_jsonable_python

from bastion.config import Settings
from bastion.training.run_errors import PROCESS_FAILED_CODE, TIMED_OUT_CODE
from bastion.training.runs import TrainingRuns
from bastion.training.tables import RUNNING, TrainingRun

__all__ = ["TrainingRunner", "settings_json"]

log = logging.getLogger(__name__)

CHILD_MODULE = "bastion.training.child"
STOP_GRACE_S = 10.0
"""Seconds a child is given to end after it was asked to, before it is killed."""
TAIL_LINES = 40
"""Lines of a child's standard error kept for the message of a failed run."""


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def settings_json(settings: Settings) -> str:
    """``settings`` as JSON a child process reads back with ``Settings.model_validate``
    (secrets included: it goes through a pipe, never the command line or environment)."""
    return json.dumps(to_jsonable_python(_reveal(settings.model_dump(mode="python"))))


class TrainingRunner:
    """Claims training runs and runs each in a child process."""

    def __init__(
        self,
        runs: TrainingRuns,
        settings: Settings,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        self.runs = runs
        self.settings = settings
        self.config = settings.training
        self.command = list(command or (sys.executable, "-m", CHILD_MODULE))
        """What starts a child (the run id and the claim token are added)."""
        self.worker = f"{socket.gethostname()[:60]}:{os.getpid()}"
        self._payload = settings_json(settings).encode("utf-8")

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Run claimed runs one after the other until ``stop`` is set; look for new ones
        every ``training.poll_s`` while there are none."""
        while not stop.is_set():
            try:
                worked = await self.run_once(stop)
            except Exception:
                log.exception("training runner: a round failed")
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_s)

    async def run_once(self, stop: asyncio.Event | None = None) -> bool:
        """Claim one run and run it to its end; False when there was none to claim."""
        token = f"{self.worker}:{uuid.uuid4().hex[:12]}"
        run = await asyncio.to_thread(self.runs.claim, token)
        if run is None:
            return False
        log.info("training run %s (%s, %s) claimed", run.id, run.tenant_id, run.category)
        await self._supervise(run, token, stop or asyncio.Event())
        return True

    async def _supervise(self, run: TrainingRun, token: str, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            run.id,
            token,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        reader = asyncio.create_task(_read_lines(proc, tail, run.id))
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(stop.wait())
        deadline = loop.time() + self.config.max_seconds
        try:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(self._payload)
                await proc.stdin.drain()
                proc.stdin.close()
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    await _end(proc)
                    await asyncio.to_thread(
                        self.runs.fail,
                        run.id,
                        TIMED_OUT_CODE,
                        f"the run took longer than training.max_seconds "
                        f"({self.config.max_seconds:g} s) and was stopped",
                        worker=token,
                    )
                    return
                await asyncio.wait(
                    {exited, stopping},
                    timeout=min(self.config.heartbeat_s, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if exited.done():
                    break
                if stopping.done():
                    await _end(proc)
                    if await asyncio.to_thread(self.runs.release, run.id, token):
                        log.info("training run %s put back in the queue (stopping)", run.id)
                    return
                # False once the child recorded the outcome and is on its way out
                await asyncio.to_thread(self.runs.heartbeat, run.id, token)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, STOP_GRACE_S)  # the last words it wrote
            await self._after(run, token, proc.returncode, tail)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            for task in (reader, exited, stopping):
                task.cancel()

    async def _after(
        self, run: TrainingRun, token: str, returncode: int | None, tail: deque[str]
    ) -> None:
        """Fail the run if the child ended without recording its outcome."""
        now = await asyncio.to_thread(self.runs.by_id, run.id)
        if now is None or now.status != RUNNING or now.claimed_by != token:
            if now is not None:
                log.info("training run %s: %s", run.id, now.status)
            return
        said = "\n".join(tail).strip()
        message = f"the training process ended (exit status {returncode}) without an outcome"
        if said:
            message += ": " + said[-2000:]
        await asyncio.to_thread(self.runs.fail, run.id, PROCESS_FAILED_CODE, message, worker=token)
        log.warning("training run %s failed: %s", run.id, message)


async def _read_lines(proc: asyncio.subprocess.Process, tail: deque[str], run_id: str) -> None:
    """Keep the last lines the child writes on its standard error (and log them)."""
    assert proc.stderr is not None
    async for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line[:1000])
            log.debug("training run %s: %s", run_id, line)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Ask the child to end, then kill it after :data:`STOP_GRACE_S`."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
