"""The ``zerotouch`` command: a thin front end over the library; no protocol logic here.

Each command group lives in its own module that exposes ``HELP`` and ``register(parser)``;
``register`` adds subcommands whose ``func(args) -> int`` does the work. Errors from the
library are printed as one line (``reason: message``) with exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from zerotouch_plugin.errors import ZerotouchError

__all__ = ["COMMAND_GROUPS", "build_parser", "main", "run"]

# Command group name -> module implementing it (a new group is one entry).
COMMAND_GROUPS: dict[str, str] = {
    "vendor": "zerotouch_plugin.cli.vendor",
    "voucher": "zerotouch_plugin.cli.voucher",
    "demo": "zerotouch_plugin.cli.demo",
    "registrar": "zerotouch_plugin.cli.registrar",
    "masa": "zerotouch_plugin.cli.masa",
    "sztp": "zerotouch_plugin.cli.sztp",
    "pledge": "zerotouch_plugin.cli.pledge",
    "device": "zerotouch_plugin.cli.device",
    "fleet": "zerotouch_plugin.cli.fleet",
    "discovery": "zerotouch_plugin.cli.discovery",
    "proxy": "zerotouch_plugin.cli.proxy",
    "netopeer2-plugin": "zerotouch_plugin.cli.netopeer2",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the group named in ``argv`` is imported, the others get a bare entry.

    Importing every group (aiohttp, SQLAlchemy, yangson ...) costs seconds per invocation.
    With no group named (``zerotouch --help``), each group's ``HELP`` is read from its
    source instead, so the overview imports none of them.
    """
    parser = argparse.ArgumentParser(
        prog="zerotouch",
        description="Zero-touch bootstrapping (BRSKI RFC 8995) for network devices.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback for unexpected errors"
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    wanted = next((arg for arg in argv or () if not arg.startswith("-")), None)
    for name, module_name in COMMAND_GROUPS.items():
        if wanted not in COMMAND_GROUPS:
            summary = _help_from_source(module_name)
            groups.add_parser(name, help=summary, description=summary)
            continue
        if name != wanted:
            groups.add_parser(name)
            continue
        module = importlib.import_module(module_name)
        sub = groups.add_parser(name, help=module.HELP, description=module.HELP)
        module.register(sub)
    return parser


def _help_from_source(module_name: str) -> str:
    """A group's ``HELP`` string literal, read from its source without importing the module."""
    spec = importlib.util.find_spec(module_name)
    if spec is not None and spec.origin is not None:
        with open(spec.origin, encoding="utf-8") as source:
            tree = ast.parse(source.read(), spec.origin)
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                return node.value.value
    return str(importlib.import_module(module_name).HELP)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.parse_args([*(argv or sys.argv[1:]), "--help"])
        return 2
    try:
        return int(func(args))
    except ZerotouchError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"io-error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"internal-error: {type(exc).__name__}: {exc} (rerun with --debug)", file=sys.stderr)
        return 2


def run() -> NoReturn:
    """The ``zerotouch`` program: ``main``, then exit without tearing the interpreter down.

    By the time ``main`` returns, every command has closed its files, servers and database
    sessions; what is left is freeing the heap (the compiled YANG schema, SQLAlchemy's and
    aiohttp's module state), which takes 0.2 to 1.5 s of CPU per process and made every
    short command and every server stop that much slower.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
