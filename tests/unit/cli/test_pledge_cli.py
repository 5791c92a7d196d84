"""``zerotouch pledge enroll`` errors: one line, exit 1, nothing written; for argument and
folder errors, and against hostile registrars (raw TLS servers on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, VoucherRequest
from zerotouch_plugin.cli import main
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import server_context


def test_empty_pledge_folder_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["pledge", "enroll", "--dir", str(tmp_path), "--registrar", "https://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("config-error:") and "idevid.pem is missing" in err
    assert "\n" not in err
    assert list(tmp_path.iterdir()) == []


def _pledge_folder(folder: Path, serial: str, now: datetime) -> Identity:
    """A factory pledge folder for ``serial``; the vendor CA that issued it."""
    vendor = certs.make_ca("vendor", now=now)
    idevid = certs.issue_idevid(vendor, serial, masa_url=None, now=now)
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [vendor.cert])
    return vendor


def test_registrar_url_must_be_https(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pledge_folder(tmp_path, "CLI-1", datetime.now(UTC))
    code = main(["pledge", "enroll", "--dir", str(tmp_path), "--registrar", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("config-error:") and "https://HOST" in err
    assert not (tmp_path / "ldevid.pem").exists()


@pytest.mark.parametrize(("option", "value"), [("--retries", "-1"), ("--timeout", "0")])
def test_bad_numbers_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            ["pledge", "enroll", "--dir", str(tmp_path), "--registrar", "https://h", option, value]
        )
    assert exc.value.code == 2


Answerer = Callable[[str, bytes], bytes]  # request path and body -> the raw HTTP answer


def _registrar(ctx: ssl.SSLContext, answer: Answerer) -> tuple[socket.socket, int]:
    """A raw TLS registrar on 127.0.0.1 in a thread, answering each request of each
    connection with what ``answer`` makes of it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def exchange(conn: ssl.SSLSocket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            while b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                if len(rest) < length:
                    break
                body, data = rest[:length], rest[length:]
                conn.sendall(answer(head.split(b" ")[1].decode(), body))

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), ctx.wrap_socket(raw, server_side=True) as conn:
                exchange(conn)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def _enroll_against(folder: Path, tls: Identity, answer: Answerer) -> int:
    """``zerotouch pledge enroll`` of ``folder`` against a registrar presenting ``tls``."""
    ctx = server_context(tls, client_cas=None, require_client_cert=False)
    listener, port = _registrar(ctx, answer)
    with listener:
        return main(
            ["pledge", "enroll", "--dir", str(folder), "--registrar", f"https://127.0.0.1:{port}"]
        )


def _always_answered(folder: Path, answer: bytes) -> int:
    """``zerotouch pledge enroll`` of a new pledge in ``folder`` against a registrar of its
    vendor's PKI that answers every request with ``answer``."""
    now = datetime.now(UTC)
    vendor = _pledge_folder(folder, "CLI-2", now)
    tls = certs.issue_tls_server(vendor, "registrar", hosts=["127.0.0.1"], now=now)
    return _enroll_against(folder, tls, lambda _path, _body: answer)


def test_a_registrars_refusal_text_reaches_the_terminal_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an unverified registrar (RFC 8995 §5.1) writes the refusal: no terminal escapes, no NUL
    body = b"\x1b]0;owned\x07\x1b[2Jhidden\x00"
    answer = b"HTTP/1.1 403 No\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    code = _always_answered(tmp_path, answer)
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("policy-refused:"), err
    assert "\\x1b]0;owned\\x07\\x1b[2Jhidden\\x00" in err
    assert not any(ord(c) < 0x20 for c in err)


def test_a_voucher_forged_with_another_devices_idevid_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The vendor CA of masa-ca.pem issued every IDevID: a registrar holding the key of one
    device (taken out of it) must not vouch another into its domain (RFC 8995 §5.6.1)."""
    now = datetime.now(UTC)
    vendor = _pledge_folder(tmp_path, "CLI-3", now)
    stolen = certs.issue_idevid(vendor, "CLI-4", masa_url=None, now=now)
    evil_domain = certs.make_ca("evil domain", now=now)
    tls = certs.issue_registrar(evil_domain, "evil", hosts=["127.0.0.1"], now=now)
    reports: list[dict[str, object]] = []

    def answer(path: str, body: bytes) -> bytes:
        if path.endswith("/requestvoucher"):
            pvr = VoucherRequest.from_json(cms.inspect(body).content)
            forged = Voucher(
                created_on=now,
                assertion=Assertion.LOGGED,
                serial_number=pvr.serial_number,
                pinned_domain_cert=certs.der(evil_domain.cert),
                nonce=pvr.nonce,
            )
            signed = cms.sign(forged.to_json(), signer=stolen, now=now)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {cms.MEDIA_TYPE_VOUCHER_CMS}\r\n"
            return head.encode() + b"Content-Length: %d\r\n\r\n%s" % (len(signed), signed)
        if path.endswith("/voucher_status"):
            reports.append(json.loads(body))
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    code = _enroll_against(tmp_path, tls, answer)
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("untrusted-signer:") and "IDevID profile" in err, err
    assert [report["status"] for report in reports] == [False]
    assert not (tmp_path / "ldevid.pem").exists()


def test_a_redirection_to_an_unparsable_location_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # urljoin raises ValueError on an unclosed IPv6 bracket: a refusal, not internal-error
    answer = b"HTTP/1.1 307 Elsewhere\r\nLocation: https://[::1\r\nContent-Length: 0\r\n\r\n"
    code = _always_answered(tmp_path, answer)
    err = capsys.readouterr().err.strip()
    assert code == 1 and "unusable redirection Location" in err, err
