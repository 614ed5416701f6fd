"""Resolving a command-line target, ``MODULE:OBJECT``, to a ``BoundPipeline``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from agora.console import UsageError

__all__ = ["load_target"]


def load_target(spec: str) -> Any:
    """Resolve ``MODULE:OBJECT`` to a BoundPipeline (calling it if it is a factory that
    takes no arguments). Anything else is a ``UsageError`` naming the target."""
    from agora import BoundPipeline

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"a target must be MODULE:OBJECT (e.g. jobs.orders:pipeline); got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r}: {exc} — check the name and "
                         f"that it is importable from {os.getcwd()}") from exc
    except Exception as exc:  # the module itself raised while importing
        raise UsageError(f"importing module {module_name!r} failed: {type(exc).__name__}: "
                         f"{exc} (--traceback shows where)") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, BoundPipeline):
        return obj
    if callable(obj):
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise UsageError(
                f"{spec} is a {_kind(obj)} that needs arguments; a factory must take none — "
                f"point at a BoundPipeline or at a function returning one") from None
        except ValueError:  # no signature to inspect (some builtins): just try it
            pass
        try:
            built = obj()
        except Exception as exc:
            raise UsageError(f"calling factory {spec} failed: {type(exc).__name__}: {exc} "
                             f"(--traceback shows where)") from exc
        if isinstance(built, BoundPipeline):
            return built
        raise UsageError(
            f"{spec}() returned a {type(built).__name__}, not a BoundPipeline — the factory "
            f"must return Pipeline(source).pipe(...).build(sink)")
    raise UsageError(
        f"{spec} is a {type(obj).__name__}, not a BoundPipeline (or a factory returning "
        f"one) — build it with Pipeline(source).pipe(...).build(sink)")


def _kind(obj: Any) -> str:
    return "class" if inspect.isclass(obj) else "function" if inspect.isroutine(obj) else \
        type(obj).__name__
