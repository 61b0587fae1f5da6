"""Functions named by "module:function" strings, so that the runner never imports torch, Lightning or
echomask itself: every benchmark process imports what it runs."""
from __future__ import annotations

import importlib
from collections.abc import Callable


def resolve(target: str) -> Callable:
    """The function `target` = "package.module:function" names (imports the module)."""
    module_name, separator, function_name = target.partition(":")
    if not separator:
        raise ValueError(f"expected 'module:function', got {target!r}")
    return getattr(importlib.import_module(module_name), function_name)


def call(target: str, *arguments) -> None:
    """Process target: run `resolve(target)(*arguments)`."""
    resolve(target)(*arguments)
