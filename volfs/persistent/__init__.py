"""PersistentVolume kinds behind one seam: see :mod:`volfs.persistent.plugins`.

NFS (:class:`NfsSource`) is the first kind; the daemon registers the kinds it
serves in one :class:`PersistentSources`.
"""

from volfs.persistent.nfs import NFS_KIND, NFS_PROVISIONER, NfsSource, ShareOps, expand_sub_dir
from volfs.persistent.plugins import (
    PROVISIONED_BY,
    ClosableStore,
    Deleter,
    PersistentSource,
    PersistentSources,
    Provisioned,
    Provisioner,
    ReclaimFailed,
    Recycler,
    SourceRefused,
)

__all__ = ["NFS_KIND", "NFS_PROVISIONER", "PROVISIONED_BY", "ClosableStore", "Deleter", "NfsSource",
           "PersistentSource", "PersistentSources", "Provisioned", "Provisioner",
           "ReclaimFailed", "Recycler", "ShareOps", "SourceRefused", "expand_sub_dir"]
