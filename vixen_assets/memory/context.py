"""``GpuContext``: the typed seam under ``Device`` that memory objects are built on.

A :class:`GpuContext` holds what the memory layer needs of one opened device (logical device, device info, budget,
allocator chain, suballocator, buffer factory, lifetime, registry, tracker, command pool). ``Buffer``, ``Image``,
``BufferSet``, every :class:`~vixen_assets.memory.resource.TrackedResource`, ``AllocationGroup``, defragmentation
and the memory report take it, never a ``Device``: the memory layer never holds or calls an object of a layer
above it.

Layers above register callbacks on it instead of being reached into: the transfer layer adds a *pending flush*
(:meth:`GpuContext.add_pending_flush`): "submit the work still only recorded into this resource", called before a
resource retires so that its ``last_use`` covers every copy into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vk import DeviceInfo, LogicalDevice
    from ..vk.commands import CommandPool
    from .allocator import BudgetedAllocator
    from .blocks import Suballocator
    from .budget import BudgetManager
    from .buffers import BufferFactory
    from .lifetime import Lifetime
    from .registry import ResourceRegistry
    from .tracker import AllocationTracker

#: a "flush pending work into this resource" callback (the resource is any GPU object)
PendingFlush = Callable[[object], None]


class GpuContext:
    """The memory layer's view of one device; build it with the device (``Device.context`` exposes it)."""

    __slots__ = ("logical", "info", "physical", "budget", "allocator", "suballocator", "buffers", "lifetime",
                 "registry", "tracker", "command_pool", "_flushes", "image_checks")

    def __init__(self, *, logical: LogicalDevice, info: DeviceInfo, physical: Any, budget: BudgetManager,
                 allocator: BudgetedAllocator, suballocator: Suballocator, buffers: BufferFactory,
                 lifetime: Lifetime, registry: ResourceRegistry, tracker: AllocationTracker,
                 command_pool: CommandPool) -> None:
        """Gather the parts (``Device`` builds them in order: budget, tracker, registry, lifetime, chain).

        :param logical: the logical device (queues, enabled features).
        :param info: the device's description (heaps, memory types, limits).
        :param physical: the ``VkPhysicalDevice`` handle (format queries).
        :param budget: the device's budget manager.
        :param allocator: the budgeted allocation chain.
        :param suballocator: the TLSF block suballocator under the chain.
        :param buffers: the buffer factory.
        :param lifetime: the device timeline and deferred destruction.
        :param registry: live GPU objects (the leak report).
        :param tracker: counts of memory calls.
        :param command_pool: the main queue's command pool for one-shot work.
        """
        self.logical = logical
        self.info = info
        self.physical = physical
        self.budget = budget
        self.allocator = allocator
        self.suballocator = suballocator
        self.buffers = buffers
        self.lifetime = lifetime
        self.registry = registry
        self.tracker = tracker
        self.command_pool = command_pool
        self._flushes: list[PendingFlush] = []
        #: image parameters that passed ``memory.images.check_image_parameters`` -> the bytes they imply (the
        #: limits and format support of a device never change; a batch of 500 textures of one shape asks once)
        self.image_checks: dict[tuple[int, ...], int] = {}
        self._wire_buffers()

    def _wire_buffers(self) -> None:
        """Point the buffer factory's retire hook at the callbacks (the one callback itself when there is one:
        buffer destruction is a hot path)."""
        fl = self._flushes
        self.buffers.before_retire = fl[0] if len(fl) == 1 else (self.flush_pending if fl else None)

    # -- callbacks from the layers above -------------------------------------------------------------------------
    def add_pending_flush(self, fn: PendingFlush) -> None:
        """Register ``fn(resource)``: submit work still only recorded into ``resource`` (called before it retires).

        :param fn: the callback; it must be cheap when nothing is pending into ``resource``.
        """
        self._flushes.append(fn)
        self._wire_buffers()

    def remove_pending_flush(self, fn: PendingFlush) -> None:
        """Unregister a callback added with :meth:`add_pending_flush` (no-op when absent).

        :param fn: the callback.
        """
        if fn in self._flushes:
            self._flushes.remove(fn)
            self._wire_buffers()

    def flush_pending(self, resource: object) -> None:
        """Call every pending-flush callback for ``resource`` (before it retires or is read back).

        :param resource: a GPU object of this device.
        """
        for fn in self._flushes:
            fn(resource)

    # -- helpers the memory objects share -------------------------------------------------------------------------
    def memory_type(self, type_bits: int, strategy: str) -> int:
        """The memory type index for ``strategy`` among ``type_bits`` (cached by the buffer factory).

        :param type_bits: ``VkMemoryRequirements.memoryTypeBits``.
        :param strategy: ``device_local``, ``host_visible``, ``host_cached`` or ``auto``.
        """
        return self.buffers.memory_type(type_bits, strategy)

    @property
    def device_open(self) -> bool:
        """False once the logical device was destroyed (Vulkan objects are then already gone)."""
        return self.logical.handle is not None

    def __repr__(self) -> str:
        return f"<GpuContext {self.info.name!r}>"
