"""``vixen_assets.validate`` / ``vixen-assets validate``: every rule on a generated corpus, crash and timeout
isolation, reports (JSON schema, JUnit, SARIF, HTML in Chromium), --resume, --fix, the CLI's exit codes, Dask."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from validate_corpus import build_corpus, write_mesh
from vixen_assets import validate
from vixen_assets.cli.main import main as cli_main
from vixen_assets.validate.report import SCHEMA_PATH, ValidationReport

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "scenes" / "small_scene.usda"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("vcorpus") / "lib"
    return build_corpus(root)


@pytest.fixture(scope="module")
def report(corpus: dict) -> ValidationReport:
    root = next(iter(corpus.values()))[0].parent.parent
    return validate([root], workers=2, confine=str(root))


def _asset(report: ValidationReport, path: Path):
    by = {a.uri: a for a in report.assets}
    return by[str(path.resolve())]


CASES = ["points-nan", "face-too-small", "counts-mismatch", "index-out-of-range", "primvar-size", "primvar-invalid",
         "degenerate-face", "unused-points", "extent", "normals-zero", "no-faces", "open-failed", "subset-family",
         "outside-root", "stage-metadata", "default-prim", "missing-reference", "composition-error", "attribute-type",
         "array-type", "subset-families", "ktx2-sizes", "ktx2-identifier", "ktx2-header", "ktx2-mip-chain", "ktx2-dfd", "ktx2-kvd", "ktx2-writer",
         "ktx2-index", "ktx2-level-index", "ktx2-padding", "ktx2-supercompression", "vox-chunks", "vox-model",
         "vox-palette", "vox-scene-graph", "vox-empty-model", "vox-duplicate", "vox-transparent"]


@pytest.mark.parametrize("name", CASES)
def test_each_violation_is_reported_with_its_code_and_pointer(corpus: dict, report: ValidationReport,
                                                              name: str) -> None:
    path, code, pointer = corpus[name]
    a = _asset(report, path)
    assert a.status == "ok"
    found = [(i.code, i.pointer) for i in a.issues]
    assert any(c == code and pointer in p for c, p in found), found
    assert report.rules[code][0] in ("error", "warning", "info")


@pytest.mark.parametrize("name", ["usd-clean", "ktx2-clean", "vox-clean"])
def test_clean_assets_have_no_errors_or_warnings(corpus: dict, report: ValidationReport, name: str) -> None:
    a = _asset(report, corpus[name][0])
    assert [i for i in a.issues if i.severity != "info"] == []
    assert any(i.code == "budget.estimate" for i in a.issues)


def test_budget_exceeds_and_device_support(corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rep = validate([corpus["usd-clean"][0]], workers=1, rules=["budget.*"], budget_mb=0.0001)
    assert [(i.code, i.severity) for i in rep.issues if i.code == "budget.exceeds"] == [("budget.exceeds", "error")]
    fits = validate([corpus["usd-clean"][0]], workers=1, rules=["budget.*"], budget_mb=64)
    assert not any(i.code == "budget.exceeds" for i in fits.issues)
    # ktx2.device-support: a UASTC file where no Basis transcoder is installed (checked in this process)
    from validate_corpus import uastc_ktx2
    from vixen_assets.formats import ktx2 as ktx2_module
    from vixen_assets.validate.context import CheckOptions
    from vixen_assets.validate.engine import AssetTask, check_asset

    path = tmp_path / "uastc.ktx2"
    path.write_bytes(uastc_ktx2())
    task = AssetTask(str(path), ("ktx2.device-support",), CheckOptions())
    monkeypatch.setattr(ktx2_module, "has_basis_transcoder", lambda: True)
    assert check_asset(task).issues == []
    monkeypatch.setattr(ktx2_module, "has_basis_transcoder", lambda: False)
    assert [(i.code, i.pointer) for i in check_asset(task).issues] == [
        ("ktx2.device-support", "supercompressionScheme")]


def test_outside_reference_is_never_opened(corpus: dict, report: ValidationReport) -> None:
    a = _asset(report, corpus["outside-root"][0])
    assert not any(i.code.startswith("geom.") for i in a.issues)  # the referenced mesh was muted, not read


def test_bundled_sample_validates_clean_and_loader_messages_are_unchanged() -> None:
    rep = validate([SAMPLE], workers=1, skip=["budget.*"])
    assert rep.counts["error"] == 0 and rep.counts["warning"] == 0, [i for i in rep.issues]
    from vixen_assets.errors import FormatError
    from vixen_assets.geometry.mesh_source import MeshSource, validate_sources
    import numpy as np

    src = MeshSource(np.zeros((3, 3), np.float32), np.array([3, 2], np.int32), np.array([0, 1, 2, 0, 1], np.int32),
                     prim_path="/m", layer_path="x.usda")
    with pytest.raises(FormatError) as exc:
        validate_sources([src])
    assert str(exc.value) == "x.usda:/m field 'faceVertexCounts': face 1 has 2 vertices; every face needs at least 3"


def test_json_report_matches_the_shipped_schema_and_round_trips(report: ValidationReport) -> None:
    data = json.loads(report.to_json())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["summary"]["numErrors"] == report.counts["error"]
    again = ValidationReport.from_dict(data)
    assert [(i.code, i.pointer) for i in again.issues] == [(i.code, i.pointer) for i in report.issues]


def test_junit_has_one_testcase_per_asset_and_failures_for_errors(report: ValidationReport) -> None:
    root = ET.fromstring(report.to_junit())
    cases = root.findall(".//testcase")
    assert len(cases) == len(report.assets)
    failing = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failing == {a.uri for a in report.assets if any(i.severity == "error" for i in a.issues)}


SARIF_SCHEMA = REPO / "tests" / "data" / "sarif-2.1.0-reduced.schema.json"


def test_sarif_is_valid_2_1_0(report: ValidationReport) -> None:
    sarif = json.loads(report.to_sarif())
    jsonschema.validate(sarif, json.loads(SARIF_SCHEMA.read_text()),
                        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    results = sarif["runs"][0]["results"]
    assert len(results) == len(report.issues)
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]


def test_crash_timeout_and_raising_rules_leave_other_assets_intact(tmp_path: Path) -> None:
    for name in ("a.crash", "b.sleep", "c.raise", "d.okay", "e.okay"):
        (tmp_path / name).write_bytes(b"x")
    t0 = time.monotonic()
    rep = validate([tmp_path], workers=2, timeout=3, plugins=("validate_test_rules",), rules=["test.*"])
    assert time.monotonic() - t0 < 40
    by = {Path(a.uri).name: a for a in rep.assets}
    assert by["a.crash"].status == "crashed" and "SIGSEGV" in by["a.crash"].detail
    assert by["b.sleep"].status == "timeout"
    assert by["c.raise"].status == "ok"
    assert [i.code for i in by["c.raise"].issues if i.severity == "error"] == ["test.raise"]
    for ok in ("d.okay", "e.okay"):
        assert by[ok].status == "ok" and [i.code for i in by[ok].issues] == ["test.ok"]
    assert rep.counts["crashed"] == 1 and rep.counts["timeout"] == 1


def test_max_issues_truncates(corpus: dict) -> None:
    path = corpus["ktx2-level-index"][0]
    rep = validate([path], workers=1, max_issues=1)
    assert len(rep.assets[0].issues) == 1 and rep.assets[0].truncated
    assert json.loads(rep.to_json())["assets"][0]["issues"]["truncated"] is True


def test_resume_rechecks_only_changed_files(tmp_path: Path) -> None:
    a = write_mesh(tmp_path / "a.usda")
    b = write_mesh(tmp_path / "b.usda")
    first = validate([tmp_path], workers=1)
    saved = tmp_path.parent / f"{tmp_path.name}-report.json"
    saved.write_text(first.to_json())
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10_000_000))
    second = validate([tmp_path], workers=1, resume=saved)
    assert second.meta["checked"] == 1
    by = {Path(x.uri).name: x for x in second.assets}
    assert by["a.usda"].info.get("resumed") is True and not by["b.usda"].info.get("resumed")
    assert [i.code for i in by["a.usda"].issues] == [i.code for i in first.assets[0].issues]
    assert a.exists()


def test_fix_writes_a_copy_that_validates_clean_for_the_fixed_rule(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    bad = write_mesh(src / "extent.usda", extent=[(0, 0, 0), (0.5, 0.5, 0)])
    before = bad.read_bytes()
    out = tmp_path / "fixed"
    rep = validate([bad], workers=1, fix_dir=out)
    assert rep.assets[0].fixed == ["geom.extent: /World/mesh.extent"]
    assert bad.read_bytes() == before  # never in place
    fixed = Path(rep.assets[0].info["fixed_path"])
    again = validate([fixed], workers=1, rules=["geom.extent"])
    assert again.counts["warning"] == 0 and again.counts["error"] == 0


def test_cli_exit_codes_and_formats(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clean = str(corpus["vox-clean"][0])
    assert cli_main(["validate", clean, "--workers", "1"]) == 0
    assert cli_main(["validate", str(corpus["vox-model"][0]), "--workers", "1"]) == 1
    assert cli_main(["validate", clean, "--fix"]) == 2
    assert cli_main(["validate", clean, "--rule", "no.such-rule"]) == 2
    with pytest.raises(SystemExit) as exc:
        cli_main(["validate", clean, "--format", "yaml"])
    assert exc.value.code == 2
    out = tmp_path / "r.sarif"
    assert cli_main(["validate", clean, "--workers", "1", "--format", "sarif", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["version"] == "2.1.0"
    capsys.readouterr()


def test_html_report_in_headless_chromium(report: ValidationReport, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = "/usr/bin/chromium"
    assert os.path.exists(chromium), "install Debian's chromium (scripts/setup.sh does)"
    page_path = tmp_path / "report.html"
    page_path.write_text(report.to_html())
    c = report.counts
    total_rows = len(report.issues) + c["crashed"] + c["timeout"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            assert page.inner_text("#count-errors b") == str(c["error"])
            assert page.inner_text("#count-warnings b") == str(c["warning"])
            assert page.locator("#issues tbody tr").count() == total_rows
            page.select_option("#f-severity", "warning")
            assert page.locator("#issues tbody tr").count() == c["warning"]
            page.select_option("#f-severity", "")
            page.select_option("#f-rule", "vox.model")
            assert page.locator("#issues tbody tr").count() == sum(1 for i in report.issues if i.code == "vox.model")
            page.select_option("#f-rule", "")
            page.click("th[data-key=code]")
            codes = page.locator("#issues tbody tr td:nth-child(2)").all_inner_texts()
            assert codes == sorted(codes)
            assert errors == []
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _comparable(rep: ValidationReport) -> list:
    return [(a.uri, a.status, [(i.code, i.severity, i.pointer, i.message) for i in a.issues]) for a in rep.assets]


def test_dask_cluster_gives_the_local_pool_s_report(corpus: dict, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    root = corpus["vox-clean"][0].parent
    local = validate([root], workers=2)
    port = _free_port()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    procs = [subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([str(bindir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads",
                                           "1", "--no-dashboard", "--host", "127.0.0.1"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        remote = validate([root], scheduler=f"tcp://127.0.0.1:{port}")
        assert _comparable(remote) == _comparable(local)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(20)


def test_scheduler_local_from_the_cli_matches_the_local_pool(corpus: dict, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    root = corpus["vox-clean"][0].parent
    out = tmp_path / "dask.json"
    assert cli_main(["validate", str(root), "--scheduler", "local", "--workers", "2", "--format", "json", "-o",
                     str(out)]) == 1  # the folder holds the .vox violations
    remote = ValidationReport.from_dict(json.loads(out.read_text()))
    assert _comparable(remote) == _comparable(validate([root], workers=2))


def test_omniverse_asset_validator_rules_through_the_optional_plugin(corpus: dict) -> None:
    pytest.importorskip("omni.asset_validator")
    path = corpus["extent"][0]
    rep = validate([path], workers=1, rules=["omni.ExtentsChecker"],
                   plugins=("vixen_assets.validate.rules_omniverse",))
    issues = [(i.code, i.pointer) for i in rep.issues]
    assert ("omni.ExtentsChecker", "/World/mesh") in issues
    assert "fix: Recompute the extents" in rep.issues[0].message
    clean = validate([corpus["usd-clean"][0]], workers=1, rules=["omni.ExtentsChecker"],
                     plugins=("vixen_assets.validate.rules_omniverse",))
    assert clean.issues == []


def test_list_rules_and_missing_paths(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["validate", "--list-rules"]) == 0
    out = capsys.readouterr().out
    for rid in ("usd.open-failed", "usd.usdGeomValidators:SubsetFamilies", "geom.points-nan", "ktx2.dfd",
                "vox.scene-graph", "budget.exceeds", "gpu.round-trip", "security.outside-root"):
        assert rid in out
    assert cli_main(["validate"]) == 2


def test_gpu_round_trip_on_the_device(corpus: dict) -> None:
    paths = [corpus["usd-clean"][0], SAMPLE, corpus["vox-clean"][0], corpus["ktx2-clean"][0]]
    rep = validate(paths, workers=1, gpu=True, rules=["gpu.*", "budget.*"])
    assert [a.status for a in rep.assets] == ["ok"] * 4
    assert rep.counts["error"] == 0 and rep.counts["warning"] == 0, rep.issues
    info = {Path(a.uri).name: a.info for a in rep.assets}
    assert info["small_scene.usda"]["gpu_meshes_checked"] == 5
    assert info["small_scene.usda"]["gpu_rays"]["rays"] == 64
    assert info["small_scene.usda"]["gpu_rays"]["mismatched"] == 0
    assert info["clean.vox"]["gpu_buffers_compared"] >= 6
    assert info["clean.ktx2"]["gpu_images_compared"] == 1


def test_round_trip_comparisons_detect_differences() -> None:
    import numpy as np

    from vixen_assets.validate.raycheck import closest_hits, compare_rays
    from vixen_assets.validate.rules_gpu import _triangle_digest

    verts = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    idx = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    perm = np.array([2, 0, 3, 1])  # the same mesh with its vertices in another order
    inv = np.argsort(perm)
    same = _triangle_digest(verts[perm], inv[idx].astype(np.uint16), 32, np.uint16)
    assert same == _triangle_digest(verts, idx, 32, np.uint16)
    bent = verts.copy()
    bent[3, 1] += 1e-3
    assert _triangle_digest(bent, idx, 32, np.uint16) != same
    tris = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], np.float64)
    o = np.array([[0.25, 0.25, 1.0], [2.0, 2.0, 1.0]])
    d = np.array([[0, 0, -1.0], [0, 0, -1.0]])
    hit, t, _ = closest_hits(tris, o, d)
    assert hit.tolist() == [True, False] and abs(t[0] - 1.0) < 1e-12
    assert compare_rays(tris, o, d, np.array([True, False]), np.array([1.0, 0.0]))[0] == []
    assert compare_rays(tris, o, d, np.array([True, False]), np.array([1.2, 0.0]))[0] == [0]
    assert compare_rays(tris, o, d, np.array([True, True]), np.array([1.0, 3.0]))[0] == [1]


@pytest.mark.assets
def test_every_shared_third_party_asset_validates_without_a_crash(vixen_assets_dir: Path) -> None:
    rep = validate([vixen_assets_dir], workers=2, timeout=120)
    assert len(rep.assets) >= 50
    bad = [(a.uri, a.status, a.detail) for a in rep.assets if a.status != "ok"]
    assert bad == []
    assert all(not i.message.startswith("rule raised") for i in rep.issues), [
        i for i in rep.issues if i.message.startswith("rule raised")]


def test_fix_applies_usd_core_fixers(tmp_path: Path) -> None:
    from pxr import Usd, UsdShade

    src = tmp_path / "in"
    src.mkdir()
    path = write_mesh(src / "binding.usda")
    stage = Usd.Stage.Open(str(path))
    UsdShade.Material.Define(stage, "/World/Looks/m")
    stage.GetPrimAtPath("/World/mesh").CreateRelationship("material:binding").SetTargets(["/World/Looks/m"])
    stage.Save()
    rule = "usd.usdShadeValidators:MaterialBindingApiAppliedValidator"
    before = validate([path], workers=1, rules=[rule])
    assert [i.code for i in before.issues] == [rule]
    rep = validate([path], workers=1, rules=[rule], fix_dir=tmp_path / "fixed")
    assert rep.assets[0].fixed and rep.assets[0].fixed[0].startswith(f"{rule}: /World/mesh")
    after = validate([rep.assets[0].info["fixed_path"]], workers=1, rules=[rule])
    assert after.issues == []


@pytest.mark.slow
def test_dask_reports_a_crashing_asset_and_finishes_the_others(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    for name in ("a.crash", "b.okay", "c.okay"):
        (tmp_path / name).write_bytes(b"x")
    rep = validate([tmp_path], scheduler="local", workers=2, plugins=("validate_test_rules",), rules=["test.*"])
    by = {Path(a.uri).name: a for a in rep.assets}
    assert by["a.crash"].status == "crashed" and "KilledWorker" in by["a.crash"].detail
    assert by["b.okay"].status == by["c.okay"].status == "ok"


def test_confine_refuses_an_input_outside_the_root(corpus: dict, tmp_path: Path) -> None:
    rep = validate([corpus["vox-clean"][0]], workers=1, confine=tmp_path)
    assert [(i.code, i.severity) for i in rep.issues] == [("security.outside-root", "error")]


def test_progress_callback_and_hook(corpus: dict) -> None:
    from vixen_assets.plugins import default_plugin_manager

    seen: list[tuple[str, int, int]] = []
    hooked: list[tuple[str, int, int]] = []

    from vixen_assets import hookimpl

    class Listener:
        @hookimpl
        def vixen_progress(self, phase: str, done: int, total: int) -> None:
            hooked.append((phase, done, total))

    pm = default_plugin_manager()
    listener = Listener()
    pm.register(listener, name="progress-listener")
    try:
        validate([corpus["vox-clean"][0], corpus["vox-model"][0]], workers=1,
                 progress=lambda *a: seen.append(a))
    finally:
        pm.unregister(listener)
    assert seen == [("validate", 1, 2), ("validate", 2, 2)]
    assert hooked == seen


def test_sarif_with_a_crash_notification_is_valid(tmp_path: Path) -> None:
    (tmp_path / "a.crash").write_bytes(b"x")
    (tmp_path / "b.okay").write_bytes(b"x")
    rep = validate([tmp_path], workers=1, plugins=("validate_test_rules",), rules=["test.*"])
    sarif = json.loads(rep.to_sarif(base=str(tmp_path)))
    jsonschema.validate(sarif, json.loads(SARIF_SCHEMA.read_text()),
                        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    inv = sarif["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False and len(inv["toolExecutionNotifications"]) == 1
    assert sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] in (
        "a.crash", "b.okay")


def test_reports_survive_control_characters_from_a_malformed_file(tmp_path: Path) -> None:
    from test_ktx2 import build_ktx2

    path = tmp_path / "ctrl.ktx2"
    path.write_bytes(build_ktx2([bytes(64)], kvd={"KTX\x01\x02bad": b"1\0", "KTXwriter": b"t\0"}))
    rep = validate([path], workers=1, rules=["ktx2.*"])
    assert any("\x01" in i.pointer + i.message for i in rep.issues)  # the key is reported as read
    root = ET.fromstring(rep.to_junit())  # still well-formed XML
    assert root.find(".//failure") is not None
    json.loads(rep.to_sarif())
    assert "\x01" not in rep.to_html().split("<script", 1)[0]


def test_a_raising_usd_validator_is_its_own_error_and_the_others_still_report(corpus: dict) -> None:
    path = corpus["stage-metadata"][0]
    rep = validate([path], workers=1, plugins=("validate_test_usd_validator",),
                   rules=["usd.vixenTest:Raises", "usd.usdGeomValidators:StageMetadataChecker"])
    assert rep.assets[0].status == "ok"
    by = {}
    for i in rep.issues:
        by.setdefault(i.code, []).append(i.message)
    assert by["usd.vixenTest:Raises"] == ["validator raised RuntimeError: validator bug"]
    assert len(by["usd.usdGeomValidators:StageMetadataChecker"]) == 2


def test_blend_files_are_validated_through_the_blender_plugin_s_rules(tmp_path: Path) -> None:
    """The Blender plugin registers ``blend.*`` rules through the same hook; here (no bpy) only the structure."""
    pytest.importorskip("vixen_assets_blender")
    good = tmp_path / "scene.blend"
    good.write_bytes(b"BLENDER-v300" + bytes(64) + b"ENDB" + bytes(20))
    cut = tmp_path / "cut.blend"
    cut.write_bytes(b"BLENDER-v300" + bytes(40))
    rep = validate([tmp_path], workers=1, rules=["blend.*"])
    by = {Path(a.uri).name: [(i.code, i.severity) for i in a.issues] for a in rep.assets}
    assert [c for c, s in by["cut.blend"] if s == "error"] == ["blend.file"]
    assert not [c for c, s in by["scene.blend"] if s == "error"]
