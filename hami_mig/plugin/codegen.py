"""Regenerates the committed kubelet API modules from proto/api.proto, reproducibly.

Run from a checkout with the pinned tools installed (``pip install grpcio-tools==1.85.1``)::

    python -m hami_mig.plugin.codegen            # rewrite hami_mig/plugin/proto/
    python -m hami_mig.plugin.codegen --out DIR  # write elsewhere (the reproducibility test)

The output embeds the grpcio-tools and protoc versions in version-check headers, so byte-identical
output needs the same grpcio-tools release as the one recorded in ``GENERATED_WITH``.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

GENERATED_WITH = "grpcio-tools==1.85.1"
PACKAGE_PROTO_DIR = Path(__file__).resolve().parent / "proto"
SOURCE_PROTO = Path(__file__).resolve().parents[2] / "proto" / "api.proto"
GENERATED_FILES = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")

_STUB_HEADER = "# ruff: noqa\n"
_ABSOLUTE_IMPORT = re.compile(r"^import api_pb2 as api__pb2$", re.MULTILINE)


class CodegenError(RuntimeError):
    """protoc failed or produced something we do not know how to post-process."""


def installed_tools_version() -> str:
    """Version of grpcio-tools in this environment, to compare with ``GENERATED_WITH``."""
    return f"grpcio-tools=={metadata.version('grpcio-tools')}"


def generate(proto: Path, out_dir: Path) -> list[Path]:
    """Compiles ``proto`` into ``out_dir`` and makes the gRPC module import its sibling relatively."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # dev-only dependency

    proto = proto.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        # Compile a copy named api.proto so the descriptor's file name never depends on the caller.
        shutil.copyfile(proto, Path(work) / "api.proto")
        args = [
            "protoc",
            f"-I{work}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            "api.proto",
        ]
        if protoc.main(args) != 0:
            raise CodegenError(f"protoc failed on {proto}")
    grpc_module = out_dir / "api_pb2_grpc.py"
    text = grpc_module.read_text(encoding="utf-8")
    fixed, count = _ABSOLUTE_IMPORT.subn("from . import api_pb2 as api__pb2", text)
    if count != 1:
        raise CodegenError(f"expected one 'import api_pb2' line in {grpc_module}, found {count}")
    grpc_module.write_text(fixed, encoding="utf-8")
    # pyproject's lint exclusion matches only *.py: keep `ruff --fix` from rewriting the generated stub.
    stub = out_dir / "api_pb2.pyi"
    stub.write_text(_STUB_HEADER + stub.read_text(encoding="utf-8"), encoding="utf-8")
    return [out_dir / name for name in GENERATED_FILES]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--proto", type=Path, default=SOURCE_PROTO, help="source .proto (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=PACKAGE_PROTO_DIR, help="output dir (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if installed_tools_version() != GENERATED_WITH:
        logger.warning("installed %s differs from pinned %s: output will not be byte-identical",
                       installed_tools_version(), GENERATED_WITH)
    for path in generate(args.proto, args.out):
        logger.info("wrote %s", path)
    if args.out.resolve() == PACKAGE_PROTO_DIR:
        shutil.copyfile(args.proto, PACKAGE_PROTO_DIR / "api.proto")
        logger.info("copied %s to %s", args.proto, PACKAGE_PROTO_DIR / "api.proto")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
