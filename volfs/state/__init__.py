"""Durable state: what volfs has acknowledged, in SQLite."""

from volfs.state.db import AsyncStateDB, StateDB

__all__ = ["AsyncStateDB", "StateDB"]
