"""RFC 7512 PKCS#11 URIs as the MASA and the registrar read them: the key they name, the
PIN kept out of every message, and a clear error for what is not understood."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.pkcs11 import DEFAULT_MODULE, MODULE_ENV, parse_pkcs11_uri


def test_path_and_query_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODULE_ENV, raising=False)
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20HSM;object=ca;id=%01%ff;type=private?pin-value=12%2634"
    )
    assert (uri.token, uri.label, uri.key_id, uri.pin) == ("My HSM", "ca", b"\x01\xff", "12&34")
    assert uri.module == DEFAULT_MODULE
    assert str(uri) == "pkcs11:token=My%20HSM;object=ca;id=%01%ff;type=private"
    assert "pin" not in str(uri)


def test_pin_source_and_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin = tmp_path / "pin"
    pin.write_text("9876\n")
    monkeypatch.setenv(MODULE_ENV, "/opt/env.so")
    uri = parse_pkcs11_uri(f"pkcs11:object=k?pin-source=file:{pin}")
    assert uri.pin == "9876" and uri.module == "/opt/env.so"
    uri = parse_pkcs11_uri("pkcs11:object=k?module-path=/opt/hsm.so")
    assert uri.module == "/opt/hsm.so" and uri.pin is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file:/key.pem", "is not a PKCS#11 URI"),
        ("pkcs11:token=t", "name the key with object="),
        ("pkcs11:object=k;slot-id=1", "'slot-id' is not a PKCS#11 URI attribute"),
        ("pkcs11:object=k;type=public", "type must be private"),
        ("pkcs11:object=k;object=j", "object is given twice"),
        ("pkcs11:object=k?pin-value=1&pin-source=file:/p", "not both"),
        ("pkcs11:object=k?pin-source=file:/nonexistent/pin", "cannot read the PIN"),
        ("pkcs11:object=%ff", "object is not UTF-8"),
    ],
)
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pkcs11_uri(text)
