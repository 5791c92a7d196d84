"""tests/vectors/data is self-describing: PROVENANCE.md has one row per file, a source
(repository, commit, licence) per folder, and kinds that match the files' content."""

from __future__ import annotations

import json
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.vectors import provenance
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.errors import NotCMS

DATA = provenance.DATA
KINDS = {
    "CMS",
    "voucher JSON",
    "voucher-request JSON",
    "audit-log JSON",
    "derived payload",
    "certificate",
    "private key",
    "YANG module",
    "SZTP conveyed information",
    "RESTCONF message",
}
_MEMBER = {
    "voucher JSON": ["ietf-voucher:voucher"],
    "voucher-request JSON": ["ietf-voucher-request:voucher"],
    "audit-log JSON": ["version", "events", "truncation"],  # RFC 8995 §5.8.1
}
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _files() -> list[str]:
    return sorted(
        str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() or p.is_symlink()
    )


def test_every_file_has_exactly_one_row() -> None:
    listed = [row.path for row in provenance.rows()]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = set(_files()) - {"PROVENANCE.md"}
    assert set(listed) == on_disk, {
        "not in PROVENANCE.md": sorted(on_disk - set(listed)),
        "listed but absent": sorted(set(listed) - on_disk),
    }


def test_no_symlinks_and_the_tree_stays_small() -> None:
    assert not [p for p in DATA.rglob("*") if p.is_symlink()]
    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert size < 600_000, f"tests/vectors/data holds {size} bytes: keep only what tests use"


def test_every_row_has_a_known_kind_a_description_and_a_use() -> None:
    for row in provenance.rows():
        assert row.kind in KINDS, row
        assert row.what and row.expect, f"{row.path}: say what it is and what tests expect"
        if row.kind == "derived payload":
            assert row.path.endswith(".payload.json") and row.what.startswith("derived:"), row
        else:
            assert not row.path.endswith(".payload.json"), row


def test_every_folder_names_its_source_and_licence() -> None:
    text = provenance.PROVENANCE.read_text(encoding="utf-8")
    table = text[text.index("## Sources and licences") : text.index("## RFC 8995 Appendix C")]
    licences: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`"):
            licences[cells[0].strip("`")] = cells[2]
    for row in provenance.rows():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", row.repository), row
        folder = row.path.removeprefix("examples/")
        owners = [f for f in licences if folder.startswith(f)]
        assert owners, f"{row.path}: its folder is not in the sources table"
        assert licences[max(owners, key=len)], f"{row.path}: no licence stated"


@pytest.mark.parametrize("row", provenance.rows(), ids=lambda r: r.path)
def test_kind_matches_the_content(row: provenance.Row) -> None:
    data = (DATA / row.path).read_bytes()
    if row.kind in ("certificate", "private key"):
        if row.kind == "certificate":
            match = _PEM_CERT.search(data)
            assert match, row.path
            x509.load_pem_x509_certificate(match.group(0))
        else:
            load_pem_private_key(data, password=None)
        return
    is_cms = True
    try:
        cms.decode(data)
    except NotCMS:
        is_cms = False
    assert is_cms == (row.kind == "CMS"), f"{row.path}: decodes as CMS: {is_cms}"
    if row.kind in _MEMBER or row.kind == "derived payload":
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:  # RFC figures wrapped at 60 columns
            obj = json.loads(data.replace(b"\n", b""))
        assert isinstance(obj, dict)
        if row.kind in _MEMBER:
            assert list(obj) == _MEMBER[row.kind], row.path
