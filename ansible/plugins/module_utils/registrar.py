# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Client of the zerotouch registrar admin API (docs/admin-api.md): JSON over HTTPS, the
client authenticated by an admin certificate of the domain CA (mutual TLS).

Standard library only, so that the inventory plugin and every registrar module share it.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from typing import Any
from urllib.parse import quote, urlsplit

from ansible.module_utils.basic import env_fallback
from ansible_collections.zerotouch.brski.plugins.module_utils.logic import enrollment_verdict

# Options of every registrar module (doc fragment zerotouch.brski.registrar); the environment
# fills what the task leaves out.
REGISTRAR_ARGS: dict[str, Any] = {
    "url": {
        "type": "str",
        "required": True,
        "fallback": (env_fallback, ["ZEROTOUCH_REGISTRAR_URL"]),
    },
    "client_cert": {
        "type": "path",
        "required": True,
        "fallback": (env_fallback, ["ZEROTOUCH_ADMIN_CERT"]),
    },
    "client_key": {
        "type": "path",
        "required": True,
        "fallback": (env_fallback, ["ZEROTOUCH_ADMIN_KEY"]),
    },
    "ca": {"type": "path", "required": True, "fallback": (env_fallback, ["ZEROTOUCH_CA"])},
    "timeout": {"type": "float", "default": 10.0},
}

JSON = "application/json"


class RegistrarError(Exception):
    """The registrar answered with an error status, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Registrar:
    """One registrar: ``url`` (https://HOST:PORT), the admin identity and the domain CA."""

    def __init__(
        self, url: str, client_cert: str, client_key: str, ca: str, timeout: float = 10.0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.port is None:
            raise RegistrarError(f"registrar url must be https://HOST:PORT, not {url!r}")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as exc:
            raise RegistrarError(f"cannot load the admin identity or CA: {exc}") from exc
        self.context = context

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) of one request; RegistrarError if unreachable or
        if TLS fails (the registrar refused the certificate, or presented an untrusted one)."""
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=self.timeout
        )
        headers = {"Accept": JSON}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except ssl.SSLError as exc:
            raise RegistrarError(
                f"TLS with the registrar {self.url} failed ({exc.reason or exc}): it refused the "
                "client certificate or its own certificate does not chain to the given CA"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RegistrarError(f"registrar {self.url} unreachable: {exc}") from exc
        finally:
            connection.close()
        return response.status, response.getheader("Content-Type", ""), data

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON answer of ``method path``; None for 404 if ``missing_ok``; RegistrarError
        with the registrar's reason for any other error status."""
        data = None if body is None else json.dumps(body).encode()
        status, _, answer = self.request(method, path, data, JSON if data is not None else None)
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            raise refusal(method, path, status, answer)
        return json.loads(answer) if answer else {}

    # -- the resources ------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """Every device record."""
        return list(self.call("GET", "/admin/devices")["devices"])

    def device(self, serial: str) -> dict[str, Any] | None:
        """Record, policy, vouchers and status reports of ``serial``; None if unknown."""
        answer = self.call("GET", device_path(serial), missing_ok=True)
        return None if answer is None else dict(answer)

    def day0(self, serial: str | None) -> tuple[str, bytes] | None:
        """(media type, document) of the stored day-0 configuration; None if there is none."""
        status, media, body = self.request("GET", day0_path(serial))
        if status == 404:
            return None
        if status >= 400:
            raise refusal("GET", day0_path(serial), status, body)
        return media.split(";", 1)[0].strip(), body


def from_params(params: dict[str, Any]) -> Registrar:
    """The client a registrar module's parameters describe."""
    return Registrar(
        params["url"], params["client_cert"], params["client_key"], params["ca"], params["timeout"]
    )


def refusal(method: str, path: str, status: int, body: bytes) -> RegistrarError:
    """The registrar's error answer as one line; 403 names the refused certificate."""
    text = body.decode("utf-8", "replace").strip()[:300]
    if status == 403:
        return RegistrarError(
            f"the registrar refused the client certificate ({method} {path}: 403 {text})", status
        )
    return RegistrarError(f"{method} {path}: {status} {text}", status)


def device_path(serial: str) -> str:
    if not serial or serial != serial.strip():
        raise RegistrarError(f"invalid serial {serial!r}")
    return f"/admin/devices/{quote(serial, safe='')}"


def day0_path(serial: str | None) -> str:
    """The device's day-0 resource, or the default one for ``None``."""
    return "/admin/day0/default" if serial is None else device_path(serial) + "/day0"


def poll(
    read: Any, done: Any, *, timeout: float, interval: float = 0.5, clock: Any = time.monotonic
) -> tuple[bool, Any]:
    """Call ``read()`` until ``done(value)`` or ``timeout`` seconds passed: (held, last value)."""
    deadline = clock() + timeout
    while True:
        value = read()
        if done(value):
            return True, value
        if clock() >= deadline:
            return False, value
        time.sleep(interval)


def wait_enrolled(
    registrar: Registrar,
    serial: str,
    *,
    handoff: bool,
    since: str | None,
    timeout: float,
    interval: float = 0.5,
) -> tuple[str, str, dict[str, Any] | None]:
    """Read the device's record until enrollment_verdict is no longer ``wait`` or ``timeout``
    seconds passed: (verdict, reason, last record)."""

    def verdict(info: dict[str, Any]) -> tuple[str, str]:
        return enrollment_verdict(
            info.get("device"), handoff=handoff, since=since, policy=info.get("policy")
        )

    _, info = poll(
        lambda: registrar.device(serial) or {},
        lambda i: verdict(i)[0] != "wait",
        timeout=timeout,
        interval=interval,
    )
    outcome, reason = verdict(info)
    return outcome, reason, info.get("device")
