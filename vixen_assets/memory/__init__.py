"""GPU memory: the per-device budget, the TLSF suballocator over ``VkDeviceMemory`` blocks, size-bucket pools,
tracked buffers, defragmentation, deferred destruction and the allocation tracker.

The pure-Python core has no Vulkan in it: :mod:`~vixen_assets.memory.tlsf` (O(1) range allocator over one block),
:mod:`~vixen_assets.memory.budget` (limits, warnings, staging quota, host overflow, stats) and
:mod:`~vixen_assets.memory.pool_buckets` (fixed-size slots in size buckets). The modules beside them wire these to
Vulkan. Import from the modules; this package re-exports nothing.
"""
