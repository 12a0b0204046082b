"""How the engine hands one prepared item to an analyzer's model and gets its output.

A :class:`ModelRunner` takes one preprocessed item at a time from many concurrent
callers and answers each with its own output; how items are gathered into model calls
is its business. Two kinds exist: :class:`~bastion.runtime.batcher.DynamicBatcher`
(the model runs in this process, ``runtime.backend: local``) and
:class:`~bastion.runtime.ray_serve.RayRunner` (the model runs in Ray Serve replicas,
``runtime.backend: ray``).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class ModelRunner(Protocol[T_contra, R_co]):
    """Runs one analyzer's model on items submitted one at a time."""

    name: str

    @property
    def depth(self) -> int:
        """Items waiting or in flight."""
        ...

    async def submit(self, item: T_contra) -> R_co:
        """The model's output for ``item`` (a preprocessed input)."""
        ...

    async def close(self) -> None:
        """Stop taking items and release what the runner holds."""
        ...
