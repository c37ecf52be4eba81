"""volfs: the volumes a kubelet gives a pod, served by one FUSE daemon."""

__version__ = "0.1.0"
