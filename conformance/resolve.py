"""Resolve what the user named (``pkg.mod.Class``, ``pkg.mod:Class``, a factory, a harness)
into conformance targets — once, with one clear error saying what was tried and what to do."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance._agora import BaseSink, BaseSource
from conformance.builtin_harnesses import builtin_harness_for
from conformance.harness import Namespace, SinkHarness, SourceHarness, factory_arity
from conformance.targets import Target

__all__ = [
    "ResolutionError",
    "WrongClassError",
    "default_harness",
    "import_object",
    "make_harness",
    "resolve_targets",
    "validate_target",
]


class ResolutionError(Exception):
    """A target, factory or harness could not be resolved; the message says what to do."""


class WrongClassError(ResolutionError):
    """The harness builds something other than the named target (the message names both)."""


def _advice(kind: str) -> str:
    return (
        f"A {kind} target is a {'BaseSink' if kind == 'sink' else 'BaseSource'} subclass whose "
        f"constructor takes no arguments. Otherwise supply a factory with "
        f"--{kind}-factory pkg.mod:make_{kind} (a callable taking no argument, or one: a fresh "
        f"temporary directory as pathlib.Path) or a harness with --{kind}-harness "
        f"pkg.mod:MyHarness (a conformance.{kind.capitalize()}Harness subclass)"
    )


def import_object(spec: str) -> Any:
    """Import ``pkg.mod:attr.path`` or ``pkg.mod.attr`` (longest importable module wins).

    A module that exists but fails to import is reported as such, never masked as "not
    found". Raises ResolutionError listing every attempt.
    """
    spec = spec.strip()
    if not spec or spec.startswith((".", ":")) or spec.endswith((".", ":")):
        raise ResolutionError(f"{spec!r} is not a dotted path (pkg.mod.Name or pkg.mod:Name)")
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        candidates = [(module_name, attr)]
    else:
        parts = spec.split(".")
        candidates = [
            (".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)
        ]
        if len(parts) == 1:
            raise ResolutionError(f"{spec!r} names no module; write pkg.mod.Name or pkg.mod:Name")
    tried: list[str] = []
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                tried.append(f"import {module_name!r}: no such module")
                continue
            raise ResolutionError(
                f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        except Exception as exc:
            raise ResolutionError(
                f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        obj: Any = module
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            tried.append(f"module {module_name!r} has no attribute {attr!r}")
            continue
        return obj
    raise ResolutionError(f"cannot import {spec!r} (tried: {'; '.join(tried)})")


def _base(kind: str) -> type[Any]:
    return BaseSink if kind == "sink" else BaseSource


def _harness_base(kind: str) -> type[Any]:
    return SinkHarness if kind == "sink" else SourceHarness


def _component_class(kind: str, spec: str) -> type:
    obj = import_object(spec)
    base = _base(kind)
    if isinstance(obj, base):
        raise ResolutionError(
            f"{spec!r} is a {kind} instance; pass its class (or a factory: a fresh instance is "
            f"needed per check)"
        )
    if not isinstance(obj, type):
        hint = f"; pass it with --{kind}-factory {spec}" if callable(obj) else ""
        raise ResolutionError(f"{spec!r} is a {type(obj).__name__}, not a class{hint}")
    if not issubclass(obj, base):
        raise ResolutionError(
            f"{spec!r} is {obj.__module__}.{obj.__qualname__}, which does not subclass "
            f"agora.{base.__name__}"
        )
    return obj


def make_harness(kind: str, value: Any, target: type | None = None, *, label: str = "") -> Any:
    """A harness instance from a harness class, instance or zero-argument callable."""
    hbase = _harness_base(kind)
    if isinstance(value, hbase):
        if target is not None and (
            value.target is None
            or (isinstance(value.target, type) and _strict_subclass(target, value.target))
        ):
            # A harness inherited by a subclass checks the subclass: a copy, so the parent's
            # harness instance keeps its own target.
            value = copy.copy(value)
            value.target = target
        return value
    if isinstance(value, type) and issubclass(value, hbase):
        return value(target) if target is not None else value()
    if isinstance(value, type) and issubclass(
        value, _harness_base("source" if kind == "sink" else "sink")
    ):
        raise ResolutionError(f"{label or value!r} is a harness for the other kind of component")
    if callable(value):
        made = value()
        if isinstance(made, hbase):
            return make_harness(kind, made, target, label=label)
    raise ResolutionError(
        f"{label or value!r} is not a {hbase.__name__} (subclass, instance, or a callable "
        f"returning one)"
    )


def _strict_subclass(cls: type, parent: type) -> bool:
    return isinstance(cls, type) and cls is not parent and issubclass(cls, parent)


def validate_target(target: Target) -> Target:
    """Build one component through ``target``'s harness (in a throw-away folder, as the
    working directory) and check that it is an instance of the named class.

    Raises ResolutionError naming both classes otherwise — e.g. a subclass inheriting its
    parent's ``__conformance_harness__`` whose ``build()`` hard-codes the parent: every
    check would silently test the parent. A harness that cannot build at all is left to
    the checks, which report it per check.
    """
    from conformance.checks._context import HarnessMismatch, check_built, expected_class
    from conformance.runner import working_directory

    if expected_class(target) is None:
        return target
    with tempfile.TemporaryDirectory(prefix="conformance-resolve-") as tmp:
        ns = Namespace(name="cf_resolve", path=Path(tmp) / "resolve")
        ns.path.mkdir()
        with working_directory(Path(tmp)):
            try:
                component = target.harness.build(ns)
            except Exception:
                return target
            try:
                check_built(target, component)
            except HarnessMismatch as exc:
                raise WrongClassError(str(exc)) from None
            finally:
                close = getattr(component, "close", None)
                if close is not None:
                    with contextlib.suppress(BaseException):
                        result = close()
                        if inspect.isawaitable(result):
                            asyncio.run(_bounded(result))
                with contextlib.suppress(Exception):
                    target.harness.cleanup(ns)
    return target


async def _bounded(awaitable: Any) -> None:
    await asyncio.wait_for(awaitable, timeout=10)


def default_harness(kind: str, cls: type, spec: str) -> Any:
    """The harness for a bare class: its ``__conformance_harness__`` (a harness or dotted
    path), else the built-in registry's, else construction with no arguments and no
    read-back / seeding (checks needing those report NOT-VERIFIABLE)."""
    declared = getattr(cls, "__conformance_harness__", None)
    if declared is not None:
        value = import_object(declared) if isinstance(declared, str) else declared
        return make_harness(kind, value, cls, label=f"{spec}.__conformance_harness__")
    builtin = builtin_harness_for(cls)
    if builtin is not None:
        return builtin(cls)
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        params = []  # type: ignore[assignment]
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise ResolutionError(
            f"{cls.__qualname__}() needs constructor arguments ({', '.join(required)}), and no "
            f"harness is registered for it"
        )
    return _harness_base(kind)(cls)


def resolve_targets(
    kind: str,
    classes: Sequence[str],
    factories: Sequence[str],
    harnesses: Sequence[str],
) -> list[Target]:
    """Targets for the ``--<kind>``, ``--<kind>-factory`` and ``--<kind>-harness`` values.

    A factory or harness applies to the single ``--<kind>`` given with it; without a
    ``--<kind>``, each factory or harness is a target of its own. Raises ResolutionError.
    """
    targets: list[Target] = []
    current = ""
    try:
        if factories and harnesses:
            raise ResolutionError(
                f"give --{kind}-factory or --{kind}-harness, not both (a harness can take a "
                f"factory)"
            )
        if classes and len(classes) > 1 and (factories or harnesses):
            raise ResolutionError(
                f"--{kind}-factory / --{kind}-harness apply to one --{kind}; with several "
                f"targets give each its harness through __conformance_harness__"
            )
        for spec in classes:
            current = f"--{kind} {spec}"
            cls = _component_class(kind, spec)
            if harnesses:
                current = f"--{kind}-harness {harnesses[0]}"
                harness = make_harness(kind, import_object(harnesses[0]), cls, label=harnesses[0])
                origin = f"--{kind} {spec} with --{kind}-harness {harnesses[0]}"
            elif factories:
                current = f"--{kind}-factory {factories[0]}"
                harness = _factory_harness(kind, factories[0], cls)
                origin = f"--{kind} {spec} with --{kind}-factory {factories[0]}"
            else:
                harness = default_harness(kind, cls, spec)
                origin = f"--{kind} (command line)"
            targets.append(validate_target(Target(kind, spec, harness, origin, cls)))
        if not classes:
            for spec in factories:
                current = f"--{kind}-factory {spec}"
                targets.append(
                    Target(
                        kind,
                        spec,
                        _factory_harness(kind, spec, None),
                        f"--{kind}-factory (command line)",
                    )
                )
            for spec in harnesses:
                current = f"--{kind}-harness {spec}"
                harness = make_harness(kind, import_object(spec), None, label=spec)
                found = harness.target if isinstance(harness.target, type) else None
                targets.append(
                    validate_target(
                        Target(kind, spec, harness, f"--{kind}-harness (command line)", found)
                    )
                )
    except ResolutionError as exc:
        where = f"cannot use {current}: " if current else ""
        # The generic advice is about finding a way to build the component; a harness that
        # builds the wrong class needs only its own message.
        advice = "" if isinstance(exc, WrongClassError) else f". {_advice(kind)}."
        raise ResolutionError(f"conformance: {where}{exc}{advice}") from None
    return targets


def _factory_harness(kind: str, spec: str, cls: type | None) -> Any:
    factory = import_object(spec)
    if not callable(factory):
        raise ResolutionError(f"{spec!r} is a {type(factory).__name__}, not a callable")
    try:
        factory_arity(factory)
    except TypeError as exc:
        raise ResolutionError(str(exc)) from None
    return _harness_base(kind)(cls, factory=factory)
