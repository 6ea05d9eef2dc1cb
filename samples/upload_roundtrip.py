"""Upload buffers of several sizes to the GPU, read them back, and print which path each took.

Run: ``python samples/upload_roundtrip.py [--device N] [--mib 64]``. On a discrete GPU the bytes go through
host-visible staging buffers and the DMA (transfer-only) queue with queue-family ownership transfers; on unified
memory (lavapipe) they are written straight into mapped device memory.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import vixen_assets as va


def main(argv: list[str] | None = None) -> int:
    """Run the round trips and print a report; exit code 1 on any mismatch."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default=None)
    ap.add_argument("--mib", type=int, default=64, help="size of the largest buffer")
    ap.add_argument("--validation", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(7)
    ok = True
    with va.open_device(args.device, validation=args.validation or None) as device:
        info = device.info
        up = device.uploader
        print(f"device: {info.name} ({info.device_type}), unified memory: {info.unified_memory}")
        print(f"upload queue family {up.upload_queue.family} ({'dedicated transfer' if up.separate_queue else 'main'}),"
              f" ownership transfers: {up.ownership_transfer}")
        for size in (1, 1000, 64 << 10, 4 << 20, args.mib << 20):
            data = rng.integers(0, 256, size, dtype=np.uint8)
            with device.create_buffer(size, "storage|vertex", name=f"roundtrip-{size}") as buf:
                t = time.perf_counter()
                device.upload(buf, data)
                t_up = time.perf_counter() - t
                back = device.read_buffer(buf)
                same = bool(np.array_equal(back, data))
                ok &= same
                mtype = info.memory_types[buf.allocation.block.type_index]
                print(f"{size:>12,} B  {'ok ' if same else 'BAD'}  upload {t_up * 1e3:8.2f} ms "
                      f"({size / max(t_up, 1e-9) / 1e9:6.2f} GB/s)  memory type {mtype.index} "
                      f"{'|'.join(mtype.properties)}  {'direct write' if buf.host_visible and up.direct_writes else 'staged'}")
        stats = up.stats_dict()
        print(f"uploader: {stats['submits']} submits, {stats['ownership_transfers']} ownership transfers, "
              f"{stats['staged_bytes']:,} B staged, {stats['direct_bytes']:,} B written directly, "
              f"staging pool {stats['staging_pool']['buffers']} buffers")
    print("all round trips ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
