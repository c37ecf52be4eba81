"""The middle test layer: volfs's fs, stores and volume plugins called directly.

No FUSE mount, no daemon, no servers: the Operations handlers, LocalStore, the
volume plugins and the pod manager are called in ``trio.run`` over temporary
directories. Faster than tests/integration, closer to the real thing than tests/unit.
"""
