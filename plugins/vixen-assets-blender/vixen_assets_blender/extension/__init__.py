"""The vixen-assets Blender extension: a "Vixen" tab in the 3D view's sidebar with Load to GPU and Validate.

Everything lives in the ``vixen_assets_blender`` package (bundled as a wheel in the extension zip); this module
only registers it. When vixen-assets' own dependencies are missing from Blender's Python, registering reports
which one and how to install it instead of failing.
"""

from __future__ import annotations

_ui = None


def register() -> None:
    """Register the panel and operators (``vixen_assets_blender.ui``)."""
    global _ui
    try:
        from vixen_assets_blender import ui
    except ImportError as exc:  # e.g. usd-core or vulkan not installed into Blender's Python
        raise ImportError(
            f"vixen-assets needs {exc.name or exc} in Blender's Python: see the extension's README "
            "(install step: blender --background --python-expr \"import subprocess, sys; "
            "subprocess.check_call([sys.executable, '-m', 'pip', 'install', 'vixen-assets'])\")") from exc
    ui.register()
    _ui = ui


def unregister() -> None:
    """Unregister them and free the GPU session."""
    global _ui
    if _ui is not None:
        _ui.unregister()
        _ui = None
