"""volfs as a CSI v1 driver (``volfs serve --csi-endpoint unix:///PATH``).

:mod:`~volfs.csi.server` serves the Identity, Controller and Node services over gRPC,
each call run on the daemon's trio loop; :mod:`~volfs.csi.storage` keeps the volumes
(``scratch`` directories and ``nfs`` directories on a share, served at
``<root>/csi/<id>``), and :mod:`~volfs.csi.volumes` their ids, parameters and records.
"""

from volfs.csi.controller import Controller
from volfs.csi.errors import CsiError, InFlight
from volfs.csi.identity import DRIVER_NAME, Identity
from volfs.csi.node import Node
from volfs.csi.server import serve_csi
from volfs.csi.storage import CsiVolumes

__all__ = ["DRIVER_NAME", "Controller", "CsiError", "CsiVolumes", "Identity", "InFlight",
           "Node", "serve_csi"]
