"""Controllers: the PV/PVC binder, the StorageClass provisioner, the reclaimer."""
