"""USD stages onto the GPU: the stage walker (``load_stage``) and the ``Scene`` it returns."""

from .scene import Instance, Scene
from .walker import load_stage

__all__ = ["Instance", "Scene", "load_stage"]
