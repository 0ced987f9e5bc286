"""Finding the job kinds a server offers: entry points plus explicitly configured ones."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points

from .spec import JobKind

__all__ = ["KindRegistry", "load_object"]

ENTRY_POINT_GROUP = "vocloud.kinds"
"""Entry-point group under which distributions register their job kinds."""


def load_object(reference: str) -> object:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises
    ------
    ValueError
        Raised if the reference is malformed or does not resolve.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        msg = f"Expected 'module:attribute', got {reference!r}"
        raise ValueError(msg)
    try:
        module = importlib.import_module(module_name)
        obj: object = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        msg = f"Cannot load {reference!r}: {e}"
        raise ValueError(msg) from e
    return obj


class KindRegistry:
    """The job kinds of one server, by name.

    Parameters
    ----------
    kinds
        Kinds to register, in the order they are listed.
    """

    def __init__(self, kinds: Iterable[JobKind] = ()) -> None:
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.add(kind)

    @classmethod
    def discover(cls, references: Iterable[str] = ()) -> KindRegistry:
        """Kinds from installed entry points, then from ``module:attribute`` references.

        A reference may name a :class:`JobKind` or an iterable of them.
        """
        registry = cls()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            registry.add_loaded(ep.load(), source=f"entry point {ep.name}")
        for reference in references:
            registry.add_loaded(load_object(reference), source=reference)
        return registry

    def add_loaded(self, obj: object, *, source: str) -> None:
        """Register a loaded kind or iterable of kinds."""
        items = [obj] if isinstance(obj, JobKind) else list(obj)  # type: ignore[call-overload]
        for item in items:
            if not isinstance(item, JobKind):
                msg = f"{source} does not provide JobKind objects"
                raise ValueError(msg)
            self.add(item)

    def add(self, kind: JobKind) -> None:
        """Register one kind; a second kind of the same name is an error."""
        if kind.name in self._kinds and self._kinds[kind.name] != kind:
            msg = f"Two job kinds are named {kind.name!r}"
            raise ValueError(msg)
        self._kinds[kind.name] = kind

    def get(self, name: str) -> JobKind | None:
        """The kind of that name, if registered."""
        return self._kinds.get(name)

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)
