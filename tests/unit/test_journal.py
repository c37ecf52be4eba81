"""The node journal of --keep-connection: what it reads back is what is still held."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from volfs.fs import journal
from volfs.fs.journal import NodeJournal


def test_what_is_read_back_is_what_was_not_let_go(tmp_path: Path) -> None:
    written = NodeJournal(tmp_path, fresh=True)
    written.synthetic(1, ())
    written.synthetic(2, ("pods",))
    written.synthetic(3, ("pods", "gone"))
    written.backed(4, ("pods", "u", "volumes", "k", "v"), b"\x01\x02")
    written.backed(5, ("pods", "u", "volumes", "k", "v"), b"\x03")
    written.backed(6, ("pods", "u", "volumes", "k", "nfs"), None)  # cannot be reopened
    written.dropped(3)
    written.dropped(5)
    written.opened(1, 4, 0o2001)
    written.opened(2, 4, 0)
    written.released(2)
    written.dir_opened(7)
    written.close()

    records = journal.read(tmp_path)

    assert records.synthetic == {1: (), 2: ("pods",)}
    assert records.backed == {4: (("pods", "u", "volumes", "k", "v"), b"\x01\x02")}
    assert records.files == {1: (4, 0o2001)}
    assert (records.last_ino, records.last_file, records.last_dir) == (6, 2, 7)


def test_a_fresh_journal_starts_empty_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    first = NodeJournal(tmp_path, fresh=True)
    first.synthetic(9, ("pods",))
    first.close()
    again = NodeJournal(tmp_path, fresh=True)
    again.synthetic(2, ("pods",))
    again.close()
    with open(tmp_path / journal.JOURNAL_FILE, "ab") as f:
        f.write(b'{"s": 3, "p": ["po')  # a crash in the middle of a write

    records = journal.read(tmp_path)

    assert records.synthetic == {2: ("pods",)}
    assert records.last_ino == 2


def test_no_journal_is_nothing_held(tmp_path: Path) -> None:
    assert journal.read(tmp_path) == journal.Records()


def test_every_line_is_json_whatever_the_names_and_handles(tmp_path: Path) -> None:
    """The per-file lines are formatted by hand: they must still be JSON, for any volume
    path (quotes, backslashes, non-ASCII) and any file handle bytes."""
    odd = ("pods", 'a"b\\c', "volumes", "kubernetes.io~empty-dir", "é\n")
    handle = bytes(range(256))[:128]
    written = NodeJournal(tmp_path, fresh=True)
    for volume in range(1100):  # more volumes than the encoded paths kept
        written.backed(10 + volume, (*odd[:-1], f"v{volume}"), handle)
    written.backed(5, odd, handle)
    written.backed(6, odd, None)
    written.opened(3, 5, 0o100002)
    written.close()

    lines = (tmp_path / journal.JOURNAL_FILE).read_bytes().splitlines()
    assert [json.loads(line) for line in lines[-3:]] == [
        {"b": 5, "v": list(odd), "h": base64.b64encode(handle).decode()},
        {"b": 6, "v": list(odd), "h": None},
        {"o": 3, "i": 5, "f": 0o100002}]
    records = journal.read(tmp_path)
    assert records.backed[5] == (odd, handle)
    assert records.backed[10 + 1099] == ((*odd[:-1], "v1099"), handle)
    assert len(records.backed) == 1101 and records.files == {3: (5, 0o100002)}
