"""Stores: where a volume's bytes live (a local directory now; NFS next)."""

from volfs.stores.base import AttrChanges, Entry, Owner, Store
from volfs.stores.local import LocalStore
from volfs.stores.quota import QuotaExceeded, Usage

__all__ = ["AttrChanges", "Entry", "LocalStore", "Owner", "QuotaExceeded", "Store", "Usage"]
