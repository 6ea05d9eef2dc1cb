"""GPU memory: the per-device budget, the TLSF suballocator over ``VkDeviceMemory`` blocks, tracked buffers and
images on a :class:`~vixen_assets.memory.context.GpuContext`, defragmentation, deferred destruction and the
allocation tracker.

The pure-Python core has no Vulkan in it: :mod:`~vixen_assets.memory.tlsf` (O(1) range allocator over one block)
and :mod:`~vixen_assets.memory.budget` (limits, warnings, staging quota, host overflow, stats). The modules beside
them wire these to Vulkan. Import from the modules; this package re-exports nothing. (The size-bucket pool that
``benchmarks/bench_churn.py`` compares lives beside that benchmark, in ``benchmarks/pool_buckets.py``.)
"""
