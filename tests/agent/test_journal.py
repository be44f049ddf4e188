"""The allocate journal: private on disk, atomic, a list that keeps every unfinished entry, and it names only
what the interrupted calls created."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from hami_mig.agent.journal import Create, Journal
from hami_mig.mig.plan import Operation

BIG = Operation("create", 0, "3g.40gb", 4, "GPU-a")
SMALL = Operation("create", 1, "1g.10gb", 6, "GPU-b")


def creates(j: Journal) -> list[tuple[str, list[Create]]]:
    return [(e.pod, list(e.creates)) for e in j.pending()]


def test_journal_is_private_and_lists_only_creates(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state")
    j.begin("default/p", [Operation("destroy", 0, "1g.10gb", 4, "GPU-a"), BIG])
    assert j.path is not None
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(j.path.parent).st_mode) & 0o077 == 0
    assert creates(j) == [("default/p", [Create("GPU-a", 0, "3g.40gb", 4)])]
    j.done()
    assert j.pending() == [] and not j.path.exists()


def test_a_plan_without_creates_writes_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.begin("default/p", [Operation("destroy", 0, "1g.10gb", 4, "GPU-a")])
    assert j.pending() == []


def test_unusable_directory_disables_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    j = Journal(blocker / "sub")
    assert j.path is None
    j.begin("default/p", [Operation("create", 0, "1g.10gb", 4, "GPU-a")])
    assert j.pending() == []


def test_corrupt_journal_is_set_aside(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.path is not None
    j.path.write_text("{half")
    assert j.pending() == [] and not j.path.exists()
    assert (tmp_path / "allocate-journal.json.unreadable").read_text() == "{half"


def test_an_unfinished_entry_survives_later_allocates(tmp_path: Path) -> None:
    """An Allocate whose undo failed leaves its entry; the next Allocate adds its own and removes only that."""
    j = Journal(tmp_path)
    j.begin("default/a", [BIG])  # the undo failed: no done()
    j.begin("default/b", [SMALL])
    assert [pod for pod, _ in creates(j)] == ["default/a", "default/b"]
    j.done()
    assert creates(j) == [("default/a", [Create("GPU-a", 0, "3g.40gb", 4)])]
    j.done()  # nothing current any more: the unfinished entry stays
    assert len(j.pending()) == 1


def test_a_new_agent_process_keeps_the_old_entries(tmp_path: Path) -> None:
    Journal(tmp_path).begin("default/a", [BIG])
    j = Journal(tmp_path)  # the restarted agent
    j.begin("default/b", [SMALL])
    j.done()
    assert [pod for pod, _ in creates(j)] == ["default/a"]


def test_resolve_keeps_only_the_creates_still_unfinished(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.begin("default/a", [BIG, SMALL])
    entry = j.pending()[0]
    j.resolve(entry.id, [entry.creates[1]])
    assert creates(j) == [("default/a", [Create("GPU-b", 1, "1g.10gb", 6)])]
    assert j.pending()[0].id == entry.id
    j.resolve(entry.id)
    assert j.pending() == []


def test_the_single_entry_format_of_older_agents_is_read_on_upgrade(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.path is not None
    j.path.write_text(json.dumps({"pod": "default/old", "creates": [
        {"gpu_uuid": "GPU-a", "gpu_index": 0, "profile": "3g.40gb", "start": 4}]}))
    assert creates(j) == [("default/old", [Create("GPU-a", 0, "3g.40gb", 4)])]
    j.begin("default/new", [SMALL])  # the upgraded agent's first Allocate must not overwrite it
    j.done()
    assert creates(j) == [("default/old", [Create("GPU-a", 0, "3g.40gb", 4)])]
    j.resolve(j.pending()[0].id)
    assert j.pending() == [] and not j.path.exists()


def test_every_write_replaces_the_file_whole(tmp_path: Path) -> None:
    """Atomic: the file is never rewritten in place (a crash mid-write leaves the old or the new list)."""
    j = Journal(tmp_path)
    assert j.path is not None
    j.begin("default/a", [BIG])
    first = os.stat(j.path).st_ino
    j.begin("default/b", [SMALL])
    assert os.stat(j.path).st_ino != first
    assert json.loads(j.path.read_text())["version"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".journal-")], "a temporary file was left"

