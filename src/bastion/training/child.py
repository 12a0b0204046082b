"""The child process of one training run: ``python -m bastion.training.child <run id>
<claim token>``, the settings as JSON on standard input.

Started by :class:`~bastion.training.runner.TrainingRunner` for a run it claimed with
the token: it builds the process's parts (no role: no background loop), does the run's
work (:func:`bastion.training.work.run_training`) and records its progress and outcome
under the token. It stops, recording nothing, when the run is no longer the token's or
the worker that started it is gone (another worker takes the run once its lease ends).

Exit status: 0 when an outcome was recorded (succeeded or failed), 3 when the run was
not the token's to start with, 4 when it was lost on the way, 2 for bad arguments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from bastion.config import Settings
from bastion.training.run_errors import TrainingRunLost
from bastion.training.tables import RUNNING

log = logging.getLogger("bastion.training.child")


async def _main(settings: Settings, run_id: str, token: str) -> int:
    from bastion.process.components import Roles, build_components
    from bastion.training.work import WorkParts, run_training

    parent = os.getppid()
    parts = await build_components(settings, Roles())
    try:
        run = await asyncio.to_thread(parts.training_runs.by_id, run_id)
        if run is None or run.status != RUNNING or run.claimed_by != token:
            log.warning("training run %s is not this claim's to run", run_id)
            return 3
        try:
            done = await run_training(
                WorkParts.of(parts), run, token, alive=lambda: os.getppid() == parent
            )
        except TrainingRunLost as exc:
            log.warning("training run %s: %s", run_id, exc.message)
            return 4
        log.info("training run %s %s", run_id, done.status)
        return 0
    finally:
        await parts.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the run named on the command line; the exit status says how it went."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bastion.training.child <run id> <claim token>", file=sys.stderr)
        return 2
    run_id, token = args
    settings = Settings.model_validate(json.loads(sys.stdin.read()))
    # models load as the baseline first needs them, not all at start-up
    settings = settings.model_copy(update={"preload": False})
    # Bastion's own records at the configured level; libraries' only when they warn
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("bastion").setLevel(settings.log_level.upper())
    return asyncio.run(_main(settings, run_id, token))


if __name__ == "__main__":
    sys.exit(main())
