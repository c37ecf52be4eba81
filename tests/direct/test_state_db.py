"""The state database on a full disk: the change is refused whole, as NoSpace, and
the database takes writes again once there is room."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from volfs.api.errors import NoSpace
from volfs.state import StateDB


def _pod(name: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                        "uid": str(uuid.uuid4())},
            "spec": {"padding": "x" * 3000}}


def test_a_full_disk_refuses_the_change_whole_and_writes_resume_with_room(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = StateDB(path)
    db.put(_pod("first"))
    conn = db._conn  # noqa: SLF001 - a full disk, made by capping the file's pages
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    stored: list[int] = []
    with pytest.raises(NoSpace) as info:
        for i in range(100):
            db.write([_pod(f"a{i}"), _pod(f"b{i}")], [("Pod", "default", "first")])
            stored.append(i)
    assert str(info.value) == (f"no space left on the filesystem of the state database "
                               f"{path}: nothing was changed (free some space there)")
    assert not conn.in_transaction  # nothing left open to block the next write
    failed = len(stored)
    assert db.get("Pod", "default", f"a{failed}") is None  # neither half of it
    assert db.get("Pod", "default", f"b{failed}") is None
    if not stored:
        assert db.get("Pod", "default", "first") is not None  # nor its delete

    conn.execute("PRAGMA max_page_count = 1000000")  # room again
    db.put(_pod("after"))
    assert db.get("Pod", "default", "after") is not None
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_every_stored_body_reads_back_as_written(tmp_path: Path) -> None:
    """Bodies are read with a faster decoder than the one that writes them: what it
    refuses (an integer beyond 64 bits, NaN) must still read back."""
    db = StateDB(tmp_path / "state.db")
    odd = dict(_pod("odd"), spec={"huge": 1 << 70, "nan": float("nan"), "text": "é\u2028"})
    db.put(odd)
    db.put(_pod("plain"))
    [first, second] = db.list("Pod")
    assert first["spec"]["huge"] == 1 << 70 and first["spec"]["text"] == "é\u2028"
    assert first["spec"]["nan"] != first["spec"]["nan"]  # NaN
    assert second["spec"] == _pod("plain")["spec"]
    got = db.get("Pod", "default", "odd")
    assert got is not None and got["spec"]["huge"] == 1 << 70
    db.close()
