"""``BindingTable``: rebind descriptors only when a buffer's generation changed.

A buffer's :attr:`~vixen_assets.memory.buffers.Buffer.generation` starts at 1 and goes up only when its
``VkBuffer`` handle or offset changes (recreation, a defragmentation move); data updates leave it alone. A renderer
or cacher that wrote a buffer into a descriptor slot keeps a :class:`BindingTable` of what each slot was written
with, and after anything that may move buffers (``Device.defragment()``) calls :meth:`BindingTable.update` with its
descriptor-writing function: only the slots whose buffer moved are rewritten.

Example::

    table = BindingTable("scene")
    table.set("positions", positions_buffer)
    table.set(("material", 3), material_buffer)
    table.update(lambda slot, buf: write_descriptor(slot, buf.handle, buf.offset, buf.size))  # first write
    device.defragment()
    table.update(write_descriptor_fn)  # rewrites only the slots whose buffer was moved
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import DeviceClosedError

__all__ = ["Binding", "BindingTable", "Bindable"]


class Bindable(Protocol):
    """What a binding table needs of a resource (a :class:`~vixen_assets.memory.buffers.Buffer` has it)."""

    generation: int

    @property
    def offset(self) -> int:
        """Byte offset inside the resource's handle."""

    @property
    def alive(self) -> bool:
        """False once destroyed."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What one slot was last written with.

    :param buffer: the resource assigned to the slot.
    :param generation: the resource's generation when the slot was last written; 0 when it never was.
    :param offset: the resource's offset when the slot was last written (-1 when it never was).
    """

    buffer: Any
    generation: int
    offset: int

    @property
    def written(self) -> bool:
        """True once the slot has been written (``mark_bound`` / ``update``)."""
        return self.generation > 0


class BindingTable:
    """Slot -> (buffer, generation, offset) records; tells which slots need a descriptor rewrite (thread-safe).

    Slots are any hashable keys (a binding index, ``(set, binding, array element)``, a name) and keep the order in
    which they were first set.

    :param name: a label for ``repr``.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._slots: dict[Hashable, Binding] = {}

    # ------------------------------------------------------------------ assigning

    def set(self, slot: Hashable, buffer: Bindable) -> None:
        """Assign ``buffer`` to ``slot``; the slot is stale until written (unless it already holds ``buffer``
        written at its current generation)."""
        with self._lock:
            old = self._slots.get(slot)
            if old is not None and old.buffer is buffer:
                return
            self._slots[slot] = Binding(buffer, 0, -1)

    def remove(self, slot: Hashable) -> None:
        """Forget ``slot``. :raises KeyError: unknown slot."""
        with self._lock:
            del self._slots[slot]

    def mark_bound(self, slot: Hashable) -> None:
        """Record that ``slot`` was just written with its buffer as it is now (its generation and offset).

        :raises KeyError: unknown slot.
        :raises DeviceClosedError: the slot's buffer was destroyed.
        """
        with self._lock:
            b = self._slots[slot]
            self._slots[slot] = Binding(b.buffer, b.buffer.generation, b.buffer.offset)

    # ------------------------------------------------------------------ queries

    def stale(self) -> list[Hashable]:
        """Slots whose descriptor needs a rewrite: never written, or their buffer's generation changed since.

        Slots whose buffer was destroyed are not stale (there is nothing to write): see :meth:`dead`.
        """
        with self._lock:
            return [s for s, b in self._slots.items() if b.buffer.alive and b.buffer.generation != b.generation]

    def dead(self) -> list[Hashable]:
        """Slots whose buffer was destroyed since it was assigned (assign a new one, or remove the slot)."""
        with self._lock:
            return [s for s, b in self._slots.items() if not b.buffer.alive]

    def update(self, write_fn: Callable[[Hashable, Any], object]) -> list[Hashable]:
        """Call ``write_fn(slot, buffer)`` for every stale slot, marking each bound once its call returned.

        A slot whose ``write_fn`` raises stays stale (the exception propagates; slots written before it are kept).

        :returns: the slots that were written, in slot order.
        """
        written: list[Hashable] = []
        for slot in self.stale():
            with self._lock:
                b = self._slots.get(slot)
            if b is None:  # removed meanwhile
                continue
            write_fn(slot, b.buffer)
            try:
                self.mark_bound(slot)
            except (KeyError, DeviceClosedError):  # removed or destroyed while being written
                continue
            written.append(slot)
        return written

    def binding(self, slot: Hashable) -> Binding:
        """The record of ``slot``. :raises KeyError: unknown slot."""
        with self._lock:
            return self._slots[slot]

    def __getitem__(self, slot: Hashable) -> Any:
        """The buffer assigned to ``slot``."""
        return self.binding(slot).buffer

    def __contains__(self, slot: object) -> bool:
        return slot in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def slots(self) -> list[Hashable]:
        """Every slot, in the order first set."""
        with self._lock:
            return list(self._slots)

    def __repr__(self) -> str:
        label = f' "{self.name}"' if self.name else ""
        return f"<BindingTable{label} {len(self._slots)} slots, {len(self.stale())} stale>"
