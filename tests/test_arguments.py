"""Bad arguments to every public call raise a :class:`VixenError` subclass naming the argument (never a raw
``TypeError``/``OverflowError``/``AssertionError``), before anything reaches the driver, and leave the device usable
(the ``device`` fixture fails the test on validation messages or leaks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import vixen_assets as va
from vixen_assets.errors import ConfigError, DeviceClosedError, VixenError

STAGE = """#usda 1.0
def Mesh "Tri"
{
    int[] faceVertexCounts = [3]
    int[] faceVertexIndices = [0, 1, 2]
    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
}
"""

BAD_BUFFER_CALLS: list[tuple[str, dict[str, Any], type[VixenError], str]] = [
    ("usage 0xFFFFFFFF", {"size": 64, "usage": 0xFFFFFFFF}, ConfigError, "usage"),
    ("usage negative", {"size": 64, "usage": -1}, ConfigError, "usage"),
    ("usage bool", {"size": 64, "usage": True}, ConfigError, "usage"),
    ("usage float", {"size": 64, "usage": 1.0}, ConfigError, "usage"),
    ("usage None", {"size": 64, "usage": None}, ConfigError, "usage"),
    ("usage unknown name", {"size": 64, "usage": "vertex|bogus"}, ConfigError, "bogus"),
    ("usage list of ints", {"size": 64, "usage": [1, 2]}, ConfigError, "usage"),
    ("alignment 3", {"size": 64, "usage": "storage", "alignment": 3}, ConfigError, "alignment"),
    ("alignment 6", {"size": 64, "usage": "storage", "alignment": 6}, ConfigError, "alignment"),
    ("alignment -4", {"size": 64, "usage": "storage", "alignment": -4}, ConfigError, "alignment"),
    ("alignment float", {"size": 64, "usage": "storage", "alignment": 4.0}, ConfigError, "alignment"),
    ("size True", {"size": True, "usage": "storage"}, ConfigError, "size"),
    ("size float", {"size": 64.5, "usage": "storage"}, ConfigError, "size"),
    ("size whole float", {"size": 64.0, "usage": "storage"}, ConfigError, "size"),
    ("size str", {"size": "64", "usage": "storage"}, ConfigError, "size"),
    ("size None", {"size": None, "usage": "storage"}, ConfigError, "size"),
    ("size 0", {"size": 0, "usage": "storage"}, ConfigError, "size"),
    ("size negative", {"size": -1, "usage": "storage"}, ConfigError, "size"),
    ("size 2**70", {"size": 2 ** 70, "usage": "storage"}, VixenError, ""),
    ("size numpy float", {"size": np.float64(64), "usage": "storage"}, ConfigError, "size"),
    ("strategy unknown", {"size": 64, "usage": "storage", "strategy": "fast"}, ConfigError, "strategy"),
    ("strategy None", {"size": 64, "usage": "storage", "strategy": None}, ConfigError, "strategy"),
    ("name int", {"size": 64, "usage": "storage", "name": 3}, ConfigError, "name"),
    ("category None", {"size": 64, "usage": "storage", "category": None}, ConfigError, "category"),
]


@pytest.mark.parametrize(("kwargs", "error", "text"), [c[1:] for c in BAD_BUFFER_CALLS],
                         ids=[c[0] for c in BAD_BUFFER_CALLS])
def test_create_buffer_rejects_bad_arguments(device: Any, kwargs: dict[str, Any], error: type, text: str) -> None:
    used = device.budget.used
    with pytest.raises(error) as info:
        device.create_buffer(**kwargs)
    assert text in str(info.value)
    assert device.budget.used == used
    assert isinstance(device.budget.used, int)
    ok = device.create_buffer(64, "storage", alignment=16)  # still usable
    ok.destroy()


def test_numpy_integer_sizes_are_whole_numbers(device: Any) -> None:
    """A numpy integer is a whole number of bytes (``np.int64(64)`` from an array's ``nbytes`` arithmetic)."""
    buf = device.create_buffer(np.int64(64), "storage")
    try:
        assert buf.size == 64 and type(device.budget.used) is int
    finally:
        buf.destroy()


def test_upload_and_read_arguments(device: Any) -> None:
    buf = device.create_buffer(64, "storage")
    try:
        for bad in (None, 3, "text", object()):
            with pytest.raises(ConfigError):
                device.upload(buf, bad)
        with pytest.raises(ConfigError):
            device.upload(buf, np.zeros(65, np.uint8))  # larger than the buffer
        with pytest.raises(ConfigError):
            device.upload(buf, np.zeros(4, np.uint8), offset=-1)
        with pytest.raises(ConfigError):
            device.upload(buf, np.zeros(4, np.uint8), offset=1.5)
        for size, offset in ((-1, 0), (65, 0), (8, 60), (8, -1), (1.5, 0), (8, 0.5)):
            with pytest.raises(ConfigError):
                device.read_buffer(buf, size, offset)
        with pytest.raises(ConfigError):
            device.upload("not a buffer", np.zeros(4, np.uint8))
    finally:
        buf.destroy()


def _path_calls(tmp_path: Path) -> list[tuple[str, Callable[[Any], object]]]:
    return [
        ("load_texture None", lambda d: va.load_texture(None, d)),
        ("load_texture int", lambda d: va.load_texture(3, d)),
        ("load_texture missing", lambda d: va.load_texture(tmp_path / "missing.ktx2", d)),
        ("load_texture directory", lambda d: va.load_texture(tmp_path, d)),
        ("load_texture compress", lambda d: va.load_texture(tmp_path / "x.png", d, compress="bc9")),
        ("load_vox None", lambda d: va.load_vox(None, d)),
        ("load_vox missing", lambda d: va.load_vox(tmp_path / "missing.vox", d)),
        ("load_vox aabb_mode", lambda d: va.load_vox(tmp_path / "missing.vox", d, aabb_mode="bogus")),
        ("load_stage None", lambda d: va.load_stage(None, d)),
        ("load_stage int", lambda d: va.load_stage(3, d)),
        ("load_stage missing", lambda d: va.load_stage(tmp_path / "missing.usda", d)),
        ("load_stage purposes", lambda d: va.load_stage(tmp_path / "tri.usda", d, purposes="render")),
        ("load_stage progress", lambda d: va.load_stage(tmp_path / "tri.usda", d, progress=3)),
    ]


def test_loaders_reject_bad_arguments(device: Any, tmp_path: Path) -> None:
    (tmp_path / "tri.usda").write_text(STAGE)
    from PIL import Image as PILImage

    PILImage.new("RGBA", (4, 4)).save(tmp_path / "x.png")
    failures = []
    for label, call in _path_calls(tmp_path):
        try:
            out = call(device)
        except VixenError:
            continue
        except BaseException as exc:  # noqa: BLE001 - the point: nothing else may come out
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        release = getattr(out, "release", None)
        if release is not None:
            release()
        failures.append(f"{label}: accepted")
    assert not failures, "\n".join(failures)
    with va.load_stage(tmp_path / "tri.usda", device) as scene:  # still usable
        assert scene.stats.instances == 1


def test_trace_rays_shapes_and_released_scene(device: Any, tmp_path: Path) -> None:
    if not device.features.get("ray_query"):
        pytest.fail(f"{device.name} has no ray queries")
    (tmp_path / "tri.usda").write_text(STAGE)
    scene = va.load_stage(tmp_path / "tri.usda", device, acceleration_structures=True)
    o = np.array([[0.25, 0.25, 1.0]], np.float32)
    d = np.array([[0.0, 0.0, -1.0]], np.float32)
    try:
        assert va.trace_rays(scene, o, d)["hit"].tolist() == [True]
        assert va.trace_rays(scene, o[0], d[0])["hit"].tolist() == [True]  # one (3,) ray
        for bad_o, bad_d in ((np.zeros((6, 2)), np.zeros((6, 2))), (np.zeros((3, 4)), np.zeros((3, 4))),
                             (np.zeros(6), np.zeros(6)), (np.zeros((2, 3)), np.zeros((3, 3))),
                             ("abc", d), (o, None), (np.zeros((1, 3), bool), d), (np.zeros((1, 3, 1)), d)):
            with pytest.raises(ConfigError):
                va.trace_rays(scene, bad_o, bad_d)
        with pytest.raises(ConfigError):
            va.trace_rays(scene, o, d, t_max="far")
        with pytest.raises(ConfigError):
            va.trace_rays(scene, o, d, t_max=np.ones(5))
        with pytest.raises(ConfigError):
            scene.update_transforms(np.zeros((2, 4, 4)))
    finally:
        scene.release()
    with pytest.raises(DeviceClosedError, match="released"):
        va.trace_rays(scene, o, d)
    with pytest.raises(DeviceClosedError, match="released"):
        scene.build_acceleration_structures()


def test_device_and_options_arguments() -> None:
    for kwargs in ({"fraction": "0.5"}, {"fraction": 2}, {"limit_bytes": -1}, {"limit_bytes": True},
                   {"staging_quota": 1.5}, {"overflow": "disk"}, {"staging_timeout_s": None},
                   {"warning_fraction": 0}):
        with pytest.raises(ConfigError):
            va.BudgetOptions(**kwargs)
    for index in ("no such device", 99, -1, 1.5, True):
        with pytest.raises(VixenError):
            va.open_device(index, validation=True)
    with pytest.raises(ConfigError):
        va.open_device(validation=True, budget="64 MiB")
    with pytest.raises(ConfigError):
        va.open_device(validation=True, budget_fraction="all")


def test_create_image_and_read_image_arguments(device: Any) -> None:
    img = device.create_image(4, 4, vk_format=37, name="args")
    try:
        for kwargs in ({"level": 1}, {"layer": 1}, {"face": 1}, {"level": -1}, {"level": 0.5}):
            with pytest.raises(ConfigError):
                device.read_image(img, **kwargs)
        with pytest.raises(ConfigError):
            device.read_image("not an image")
    finally:
        img.destroy()
    with pytest.raises(ConfigError):
        device.create_image(4, 4, vk_format="rgba8")
    with pytest.raises(ConfigError, match="levels"):
        device.create_image(4, 4, vk_format=37, levels=0)


def test_device_methods_reject_bad_arguments(device: Any) -> None:
    buf = device.create_buffer(64, "storage", name="kept")
    try:
        calls: list[Callable[[], object]] = [
            lambda: device.create_buffer_set({"a": (1.5, "storage")}),
            lambda: device.create_buffer_set([("a", (64, "storage"))]),
            lambda: device.create_buffer_set({"a": (64, 0xFFFFFFFF)}),
            lambda: device.create_buffer_set({"a": (0, "storage")}),
            lambda: device.create_buffer_set({"a": 64}),
            lambda: device.create_buffer_set({"a": (64, "storage")}, alignment=3),
            lambda: device.create_and_upload("x", None, "storage"),
            lambda: device.create_and_upload("x", b"1234", 0xFFFFFFFF),
            lambda: device.retire("not a resource"),
            lambda: device.retire(buf, after="later"),
            lambda: device.defragment(max_bytes=-1),
            lambda: device.defragment(max_bytes="all"),
            lambda: device.phase(3),
            lambda: device.stash(3, 4),
            lambda: va.trace_rays(None, np.zeros((1, 3)), np.zeros((1, 3))),
        ]
        for i, call in enumerate(calls):
            with pytest.raises(ConfigError):
                call()
            assert buf.alive, i
    finally:
        buf.destroy()
    for kwargs in ({"buffer_image_granularity": 3}, {"separate_transfer_queue": "yes"}, {"rebar": 1.0},
                   {"block_size": 1.5}):
        with pytest.raises(ConfigError):
            va.open_device(validation=True, **kwargs)
