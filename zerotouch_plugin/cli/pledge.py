"""``zerotouch pledge ...``: the headless pledge (RFC 8995 client side) for a pledge folder.

Thin: ``services.pledge_client`` runs the sans-IO machine of ``roles.pledge`` over HTTPS.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from zerotouch_plugin.cli._args import positive_seconds
from zerotouch_plugin.cli.device import add_discovery_options
from zerotouch_plugin.errors import ConfigError

# The pledge machine, the voucher's YANG schema and the HTTPS client are imported when a
# command runs, not when ``pledge --help`` builds the parser.
if TYPE_CHECKING:
    from zerotouch_plugin.roles.pledge import Enrollment, RetryPolicy

__all__ = ["HELP", "register"]

HELP = "headless pledge: voucher exchange and EST enrollment against a registrar"


def _retries(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _discovered(args: argparse.Namespace, retry: RetryPolicy) -> Enrollment:
    """Discovery (RFC 8995 §4.1.1) by ``--discovery``; ``--registrar`` is the method
    ``configured``. Says how the registrar was found."""
    from zerotouch_plugin.config import DeviceConfig, load_config
    from zerotouch_plugin.services.pledge_client import enroll_discovering

    config = load_config(
        DeviceConfig,
        None,
        {
            "registrars": [args.registrar] if args.registrar else None,
            "discovery": args.discovery,
            "interface": args.interface,
            "vendor_registrar": args.vendor_registrar,
            "discovery_timeout": args.discovery_timeout,
            "bootstrap_rounds": args.rounds,
            "bootstrap_retry_delay": retry.base_delay,
            "bootstrap_max_delay": retry.max_delay,
        },
    )
    enrollment, candidate = asyncio.run(
        enroll_discovering(
            args.dir,
            config,
            retry=retry,
            timeout=args.timeout,
            nonceless_allowed=args.allow_nonceless,
        )
    )
    source = f" ({candidate.source})" if candidate.source else ""
    print(f"through {candidate.role} {candidate.url} found by {candidate.method}{source}")
    return enrollment


def cmd_enroll(args: argparse.Namespace) -> int:
    from zerotouch_plugin.artifacts import certs
    from zerotouch_plugin.roles.pledge import RetryPolicy
    from zerotouch_plugin.services.pledge_client import PLEDGE_FILES, enroll

    retry = RetryPolicy(
        attempts=args.retries + 1,
        base_delay=min(args.backoff, args.max_backoff),
        max_delay=args.max_backoff,
    )
    if args.registrar is None and args.discovery is None:
        raise ConfigError("give --registrar URL or --discovery METHOD,...")
    if args.discovery is None:
        enrollment = asyncio.run(
            enroll(
                args.dir,
                args.registrar,
                retry=retry,
                timeout=args.timeout,
                nonceless_allowed=args.allow_nonceless,
            )
        )
    else:
        enrollment = _discovered(args, retry)
    print(
        f"enrolled {enrollment.serial}: LDevID {certs.fingerprint(enrollment.ldevid)} in "
        f"{args.dir / PLEDGE_FILES['ldevid']}, domain CA in {args.dir / PLEDGE_FILES['domain-ca']}"
    )
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "enroll",
        help="bootstrap the pledge in its folder through a registrar",
        description=(
            "Provisional TLS, voucher-request signed with idevid.pem, voucher validation "
            "against masa-ca.pem, voucher_status, EST cacerts, csrattrs and simpleenroll, "
            "then the install in the folder: ldevid.key (0600), ldevid.pem, voucher.cms and "
            "last domain-ca.pem, then enrollstatus reporting it; exits 0. On a failure before the "
            "install exits 1 with the reason and writes nothing."
        ),
    )
    p.add_argument("--dir", type=Path, required=True, help="the pledge folder")
    p.add_argument(
        "--registrar",
        help="registrar URL, https://HOST:PORT (with --discovery: the method 'configured')",
    )
    p.add_argument(
        "--retries",
        type=_retries,
        default=5,
        help="retries per step when the registrar is unreachable or busy (default 5)",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds for one request (default 30)",
    )
    p.add_argument(
        "--backoff",
        type=positive_seconds,
        default=1.0,
        help="first retry delay in seconds, doubled each retry, with jitter (default 1)",
    )
    p.add_argument(
        "--max-backoff",
        type=positive_seconds,
        default=30.0,
        help="longest retry delay, also the cap on a server's Retry-After (default 30)",
    )
    p.add_argument(
        "--allow-nonceless",
        action="store_true",
        help="accept a voucher without nonce (one the registrar held for offline use) if its "
        "expires-on is in the future (RFC 8995 §7.2); refused by default",
    )
    add_discovery_options(p)
    p.add_argument(
        "--discovery-timeout",
        type=positive_seconds,
        default=2.0,
        help="seconds each discovery method searches (default 2)",
    )
    p.add_argument(
        "--rounds",
        type=_retries,
        default=3,
        help="cycles through the discovery methods before giving up (default 3; 0: forever)",
    )
    p.set_defaults(func=cmd_enroll)
