"""The memory map page (``Device.memory_report_html``, ``vixen-assets memory --html``) in a real headless browser.

Debian's chromium driven by Playwright (no browser download): the page loads without console errors, draws one bar
per block that ``memory_report()`` lists, colours used ranges by category, and shows before and after views around
a ``defragment()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vixen_assets.cli.main import main as cli_main
from vixen_assets.memory.memory_map import memory_map_html
from vixen_assets.testing import finish_test_device, open_test_device

KiB = 1 << 10
MiB = 1 << 20
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    assert os.path.exists(CHROMIUM), "install Debian's chromium (scripts/setup.sh does)"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return page, errors


def test_before_and_after_a_defragment(browser: Any, tmp_path: Path) -> None:
    dev = open_test_device(block_size=1 * MiB)
    bufs: list[Any] = []
    try:
        for i in range(40):
            bufs.append(dev.create_buffer((i % 7 + 1) * 24 * KiB, "storage", strategy="host_visible",
                                          name=f"mesh</script>{i}" if i == 3 else f"buf{i}",
                                          category=("meshes", "textures", "accel")[i % 3]))
        for b in bufs[::2]:
            b.destroy()
        bufs = bufs[1::2]
        before = dev.memory_report()
        result = dev.defragment()
        after = dev.memory_report()
        assert result.blocks_after < result.blocks_before and len(after["blocks"]) < len(before["blocks"])
        path = dev.memory_report_html(tmp_path / "map.html", before=before, title="defrag test")
        page, errors = open_page(browser, path)
        views = page.locator("section.view")
        assert views.count() == 2
        # one bar per block of each report; the "after" view is shown first
        assert page.locator("#view-before .block").count() == len(before["blocks"])
        assert page.locator("#view-after .block").count() == len(after["blocks"])
        assert page.locator("#view-after").is_visible() and not page.locator("#view-before").is_visible()
        used = sum(len(b["allocations"]) for b in after["blocks"])
        assert page.locator("#view-after .seg:not(.free)").count() == used
        assert page.locator("#view-after .seg.free").count() == sum(len(b["free_ranges"]) for b in after["blocks"])
        cats = page.locator("#view-after table.categories tr").all_inner_texts()
        assert any(t.startswith("meshes") for t in cats) and len(cats) == 1 + len(after["categories"])
        legend = page.inner_text("#legend")
        for cat in ("meshes", "textures", "accel", "free"):
            assert cat in legend
        # hover shows the owner: name, category, size, offset (a name with "</script>" stays text)
        target = bufs[1]
        seg = page.locator(f"#view-after .block[data-block='{target.allocation.block.id}'] .seg:not(.free)")
        tips = seg.evaluate_all("els => els.map(e => e.dataset.tip)")
        assert any(target.name in t and f"offset {target.memory_offset}" in t for t in tips)
        page.locator("#view-after .seg:not(.free)").first.hover()
        assert page.locator("#tip").is_visible() and "category" in page.inner_text("#tip")
        page.click("#tabs button:first-child")
        assert page.locator("#view-before").is_visible() and not page.locator("#view-after").is_visible()
        assert errors == []
    finally:
        for b in bufs:
            b.destroy()
        finish_test_device(dev)


def test_cli_memory_html(browser: Any, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "cli.html"
    assert cli_main(["memory", "--workload", "30", "--html", str(out)]) == 0
    assert f"memory map written to {out}" in capsys.readouterr().out.replace("\n", "")
    page, errors = open_page(browser, out)
    assert page.locator("section.view").count() == 2 and errors == []
    assert page.locator("#view-after .block").count() >= 1


def test_page_is_self_contained() -> None:
    page = memory_map_html({"device": "x", "heaps": [], "blocks": [], "budget": {}})
    assert "http://" not in page and "https://" not in page and "<link" not in page and " src=" not in page
