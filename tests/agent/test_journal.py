"""The allocate journal: private on disk, atomic, and it names only what the interrupted call created."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hami_mig.agent.journal import Journal
from hami_mig.mig.plan import Operation


def test_journal_is_private_and_lists_only_creates(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state")
    j.begin("default/p", [Operation("destroy", 0, "1g.10gb", 4, "GPU-a"),
                          Operation("create", 0, "3g.40gb", 4, "GPU-a")])
    assert j.path is not None
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(j.path.parent).st_mode) & 0o077 == 0
    entry = j.pending()
    assert entry == {"pod": "default/p", "creates": [{"gpu_uuid": "GPU-a", "gpu_index": 0, "profile": "3g.40gb",
                                                      "start": 4}]}
    j.done()
    assert j.pending() is None


def test_a_plan_without_creates_writes_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.begin("default/p", [Operation("destroy", 0, "1g.10gb", 4, "GPU-a")])
    assert j.pending() is None


def test_unusable_directory_disables_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    j = Journal(blocker / "sub")
    assert j.path is None
    j.begin("default/p", [Operation("create", 0, "1g.10gb", 4, "GPU-a")])
    assert j.pending() is None


def test_corrupt_journal_is_dropped(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.path is not None
    j.path.write_text("{half")
    assert j.pending() is None and not j.path.exists()
