"""A UsdValidation stage validator that raises, registered in usd-core's registry when this module is imported
(``plugins=("validate_test_usd_validator",)``): it becomes the rule ``usd.vixenTest:Raises``."""

from __future__ import annotations

from typing import Any

from pxr import UsdValidation

NAME = "vixenTest:Raises"


def _task(stage: Any, *args: Any) -> Any:
    raise RuntimeError("validator bug")


_registry = UsdValidation.ValidationRegistry()
if not _registry.HasValidator(NAME):
    _registry.RegisterStageValidator(
        UsdValidation.ValidatorMetadata(name=NAME, doc="raises on every stage", keywords=["vixenTest"],
                                        schemaTypes=[], isSuite=False), _task)
