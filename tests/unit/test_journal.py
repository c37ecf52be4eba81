"""The node journal of --keep-connection: what it reads back is what is still held."""

from __future__ import annotations

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
