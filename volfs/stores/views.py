"""Views of a store: one store shared by several pods, each seeing it its own way."""

from __future__ import annotations

from typing import Any, cast

from volfs.stores.base import Store


class ReadOnlyView:
    """The same store, refusing every change (the fs layer answers EROFS).

    For a volume that several pods share (a claim's PV: one store, one usage, one
    capacity) where one pod mounts it read-only and another read-write.
    """

    read_only = True

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def read_only_view(store: Store) -> Store:
    return cast(Store, ReadOnlyView(store))
