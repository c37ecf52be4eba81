"""NFS volumes: a user-space NFSv3 client (libnfs, driven by trio) and the store over it.

What the rest of volfs uses:

- :func:`open_store` (``server``, ``path``, ``mount_options``, ``capacity_bytes``,
  ``read_only``) -> :class:`NfsStore`, closed with ``await store.close()``;
- :func:`check_server`, and the directory helpers for provisioning and reclaim:
  :func:`mkdirs`, :func:`remove_tree`, :func:`rename`, :func:`scrub`, :func:`usage`
  (and :class:`NfsShares`, the ``ShareOps`` of the NFS PV-source plugin);
- :class:`NfsTarget` / :class:`NfsOptions` to parse and check a server, path and
  mount options without touching the network (:class:`OptionError` if refused);
- :class:`ServerUnreachable` (an OSError) when the server does not answer in time.

See docs/nfs.md for the design.
"""

from volfs.stores.nfs.options import NfsOptions, NfsTarget, OptionError
from volfs.stores.nfs.rpc import ServerUnreachable, Timeouts
from volfs.stores.nfs.share import (
    SET_UP_SECONDS,
    NfsShares,
    check_server,
    mkdirs,
    open_store,
    remove_tree,
    rename,
    scrub,
    usage,
)
from volfs.stores.nfs.store import NfsStore

__all__ = ["SET_UP_SECONDS", "NfsOptions", "NfsShares", "NfsStore", "NfsTarget", "OptionError",
           "ServerUnreachable", "Timeouts", "check_server", "mkdirs", "open_store",
           "remove_tree", "rename", "scrub", "usage"]
