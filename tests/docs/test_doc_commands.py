"""Every `$ hami-mig ...` shown with its output in docs/*.md and README.md prints exactly that output today.

A documented session is a fenced block with lines starting `$ `: each such line runs (in bash, one after the
other, in a scratch directory where `examples/` and the rest of the repository are visible), and the lines
after it, up to the next `$ ` line, are what it must print (stdout and stderr together). A line `...` stands
for any number of lines. `$ echo $?` prints the previous command's exit code, one line (what follows it in
the block, say a picture of the GPU, is not output). The blocks of one document run
in order and share one simulated node (`$HAMI_MIG_SIM_STATE`), so a document can plan, apply and list.

A block that cannot run here (it needs a cluster, a GPU or a server that never ends) carries a marker on the
line before its fence, with the reason:  <!-- doc-test: skip (needs a cluster) -->
"""

from __future__ import annotations

import difflib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^(\s*)(```|~~~)")
SKIP = re.compile(r"^\s*<!--\s*doc-test:\s*skip\s*(.*?)\s*-->\s*$")
TIMEOUT_S = 120


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line of the `$ ` line in the document
    shell: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    commands: tuple[Command, ...]
    skip: str | None  # the reason given by a skip marker, or None


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a document that show `$ ` commands and at least one `hami-mig` among them."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening.group(1), opening.group(2)
        start = i
        body: list[tuple[int, str]] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append((i + 1, lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip()))
            i += 1
        i += 1
        commands: list[Command] = []
        for n, (lineno, content) in enumerate(body):
            if not content.startswith("$ "):
                continue
            expected: list[str] = []
            for _, after in body[n + 1:]:
                if after.startswith("$ "):
                    break
                expected.append(after.rstrip())
            if content.strip() == "$ echo $?":  # one line; the block may go on with an illustration
                expected = expected[:1]
            while expected and not expected[-1]:
                expected.pop()
            commands.append(Command(lineno, content[2:].strip(), tuple(expected)))
        if not any(re.search(r"(^|[\s|;&(])hami-mig\s", c.shell) for c in commands):
            continue
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = SKIP.match(before)
        found.append(Block(start + 1, tuple(commands), marker.group(1) if marker else None))
    return found


def matches(expected: tuple[str, ...], actual: list[str]) -> bool:
    """`expected` against `actual` line by line; a `...` line matches any run of lines (none included)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and actual[0] == head and matches(rest, actual[1:])


def scratch(tmp: Path) -> dict[str, str]:
    """A working directory seeing the repository's top-level entries, and `hami-mig` on PATH for this Python."""
    for entry in ROOT.iterdir():
        if not entry.name.startswith("."):
            (tmp / entry.name).symlink_to(entry)
    bin_dir = tmp / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "hami-mig"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hami_mig "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAMI_MIG_", "NODE_NAME", "KUBECONFIG"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HAMI_MIG_SIM_STATE=str(tmp / "sim-state.json"),
               COLUMNS="100", LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8")
    return env


def test_every_document_with_a_session_is_found() -> None:
    """The walk finds the sessions it is meant to (guards the parser, not the docs)."""
    sample = "text\n<!-- doc-test: skip (needs a cluster) -->\n```console\n$ hami-mig device-plugin\n```\n" \
             "  ```\n  $ hami-mig plan --node x\n  out\n  ...\n  $ echo $?\n  3\n  ```\n```sh\nhami-mig demo\n```\n"
    found = blocks(sample)
    assert [(b.line, b.skip, [c.shell for c in b.commands]) for b in found] == [
        (3, "(needs a cluster)", ["hami-mig device-plugin"]),
        (6, None, ["hami-mig plan --node x", "echo $?"]),
    ]
    assert found[1].commands[0].expected == ("out", "...")
    assert matches(("a", "...", "d"), ["a", "b", "c", "d"]) and matches(("a", "..."), ["a"])
    assert not matches(("a", "...", "d"), ["a", "b"]) and not matches(("a",), ["a", "b"])


def run(shell: str, cwd: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """(exit code, stdout and stderr) of one command line, or (None, ...) when it runs past TIMEOUT_S."""
    proc = subprocess.Popen(["bash", "-c", shell], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a hami-mig under bash holds the pipe too
        output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_documented_commands_print_what_the_document_shows(doc: Path, tmp_path: Path) -> None:
    found = blocks(doc.read_text(encoding="utf-8"))
    for block in found:
        if block.skip is not None:
            assert block.skip.strip("() "), f"{doc.name}:{block.line}: a doc-test skip marker must give its reason"
    runnable = [b for b in found if b.skip is None]
    if not runnable:
        return
    env = scratch(tmp_path)
    problems: list[str] = []
    for block in runnable:
        code = 0
        for command in block.commands:
            code, output = run(f"(exit {code}); {command.shell}", tmp_path, env)
            if code is None:
                problems.append(f"{doc.name}:{command.line}: $ {command.shell}\nstill running after {TIMEOUT_S} s "
                                "(a server? mark its block <!-- doc-test: skip (reason) -->)")
                break
            actual = [line.rstrip() for line in output.rstrip("\n").splitlines()]
            while actual and not actual[-1]:
                actual.pop()
            if not matches(command.expected, actual):
                diff = "\n".join(difflib.unified_diff(list(command.expected), actual, "documented", "printed",
                                                      lineterm="", n=1))
                problems.append(f"{doc.name}:{command.line}: $ {command.shell}\n{diff}")
    assert not problems, (f"{len(problems)} documented command(s) print something else today (fix the document, "
                          "or mark a block that cannot run here with <!-- doc-test: skip (reason) -->):\n\n"
                          + "\n\n".join(problems))
