# vixen-assets: `make demo` runs the main job on a bundled sample, `make test` runs the test suite.
# Both install what they need first (scripts/setup.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
export XDG_RUNTIME_DIR ?= /tmp/vixen-xdg-$(shell id -u)

.PHONY: setup demo test typecheck test-slow bench shaders clean blender-extension

setup:
	@bash scripts/setup.sh

demo: setup
	@mkdir -p $(XDG_RUNTIME_DIR)
	$(VENV)/bin/vixen-assets devices
	$(VENV)/bin/vixen-assets load samples/scenes/small_scene.usda

test: setup typecheck
	@mkdir -p $(XDG_RUNTIME_DIR)
	VIXEN_VALIDATION=1 $(PY) -m pytest tests plugins -q

# mypy strict on the layers under the seam (vk, memory, transfer, device.py: [tool.mypy] in pyproject.toml), then the
# count of Any at the seams (printed; any untyped `device` parameter fails)
typecheck: setup
	$(PY) -m mypy
	$(PY) scripts/count_any.py --max-device-any 0

test-slow: setup
	VIXEN_VALIDATION=1 $(PY) -m pytest tests plugins -q -m slow

# The Blender extension zip (plugins/vixen-assets-blender), built and validated with Blender's extension tool
# (from the bpy wheel in .venv-blender, which scripts/setup.sh makes: bpy pins numpy < 2).
blender-extension: setup
	.venv-blender/bin/python -m vixen_assets_blender.build_extension -o dist

clean:
	rm -rf $(VENV) .pytest_cache
