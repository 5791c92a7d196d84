"""The SZTP bootstrap server's tables and repository: responses, devices, progress reports.

A response is conveyed information (RFC 8572 §6.3) kept as its RFC 7951 JSON, validated when
written and read; ``default`` answers every device without a response of its own. Tables are
prefixed ``sztp_`` so that one database can hold them beside the registrar's (an owner runs
both for the same devices).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.errors import NotFound
from zerotouch_plugin.roles.sztp_server import (
    DEFAULT_RESPONSE,
    DeviceRecord,
    ProgressRecord,
    Response,
)
from zerotouch_plugin.store.db import Base, Database, UTCDateTime

__all__ = ["DEFAULT_RESPONSE", "SeenDevice", "SztpRepository"]


class _Response(Base):
    __tablename__ = "sztp_responses"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    conveyed: Mapped[str] = mapped_column(Text)  # RFC 7951 JSON of the conveyed information
    updated: Mapped[datetime] = mapped_column(UTCDateTime)


class _Device(Base):
    __tablename__ = "sztp_devices"

    serial: Mapped[str] = mapped_column(String(255), primary_key=True)
    response: Mapped[str | None] = mapped_column(ForeignKey("sztp_responses.name"))
    voucher: Mapped[bytes | None] = mapped_column(LargeBinary)  # ownership voucher CMS DER
    voucher_expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hw_model: Mapped[str | None] = mapped_column(Text)
    os_name: Mapped[str | None] = mapped_column(Text)
    os_version: Mapped[str | None] = mapped_column(Text)
    last_progress: Mapped[str | None] = mapped_column(String(64))
    password: Mapped[str | None] = mapped_column(Text)  # hash for HTTP basic authentication


class _Progress(Base):
    __tablename__ = "sztp_progress"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    progress_type: Mapped[str] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    peer: Mapped[str | None] = mapped_column(String(128))
    report: Mapped[str | None] = mapped_column(Text)  # RFC 7951 JSON of the input, as received


@dataclass(frozen=True)
class SeenDevice:
    """What the device said about itself in get-bootstrapping-data (RFC 8572 §7.1 input)."""

    serial: str
    hw_model: str | None
    os_name: str | None
    os_version: str | None


def _record(row: _Device) -> DeviceRecord:
    return DeviceRecord(
        serial=row.serial,
        response=row.response,
        voucher=row.voucher,
        voucher_expires=row.voucher_expires,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        hw_model=row.hw_model,
        os_name=row.os_name,
        os_version=row.os_version,
        last_progress=row.last_progress,
        password=row.password,
    )


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> sztp.ConveyedInformation:
    """Validated once per distinct text: every request reads the responses."""
    return sztp.parse_conveyed_information(text.encode(), sztp.Encoding.JSON)


def _response(row: _Response) -> Response:
    return Response(row.name, _parsed(row.conveyed))


def _report_json(record: ProgressRecord) -> str:
    report = sztp.ReportProgressInput(
        record.progress_type, record.message, record.ssh_host_keys, record.trust_anchor_certs
    )
    return report.encode(sztp.Encoding.JSON).decode()


def _report_extras(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    report = sztp.ReportProgressInput.parse(text.encode(), sztp.Encoding.JSON)
    return {"ssh_host_keys": report.ssh_host_keys, "trust_anchor_certs": report.trust_anchor_certs}


class SztpRepository:
    """Every read and write of the bootstrap server goes through here."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.create_all()

    # -- responses ------------------------------------------------------------------------

    def set_response(self, name: str, info: sztp.ConveyedInformation, *, now: datetime) -> None:
        text = info.encode(sztp.Encoding.JSON).decode()
        with self.db.session() as s:
            row = s.get(_Response, name)
            if row is None:
                s.add(_Response(name=name, conveyed=text, updated=now))
            else:
                row.conveyed, row.updated = text, now

    def responses(self) -> dict[str, Response]:
        with self.db.session() as s:
            return {row.name: _response(row) for row in s.scalars(select(_Response))}

    def response(self, name: str) -> Response:
        with self.db.session() as s:
            row = s.get(_Response, name)
            if row is None:
                raise NotFound(f"no response named {name!r}")
            return _response(row)

    def delete_response(self, name: str) -> None:
        with self.db.session() as s:
            used = s.scalars(select(_Device.serial).where(_Device.response == name)).first()
            if used is not None:
                raise NotFound(f"response {name!r} is still assigned to device {used}")
            row = s.get(_Response, name)
            if row is None:
                raise NotFound(f"no response named {name!r}")
            s.delete(row)

    # -- devices --------------------------------------------------------------------------

    def set_device(
        self,
        serial: str,
        *,
        response: str | None = None,
        voucher: bytes | None = None,
        voucher_expires: datetime | None = None,
        password: str | None = None,
    ) -> None:
        """Create or update a device; only the given fields change."""
        with self.db.session() as s:
            if response is not None and s.get(_Response, response) is None:
                raise NotFound(f"no response named {response!r}")
            row = self._device(s, serial)
            if response is not None:
                row.response = response
            if voucher is not None:
                row.voucher, row.voucher_expires = voucher, voucher_expires
            if password is not None:
                row.password = password

    def device(self, serial: str) -> DeviceRecord | None:
        with self.db.session() as s:
            row = s.get(_Device, serial)
            return None if row is None else _record(row)

    def devices(self) -> list[DeviceRecord]:
        with self.db.session() as s:
            return [_record(r) for r in s.scalars(select(_Device).order_by(_Device.serial))]

    def lookup(self, serial: str) -> tuple[DeviceRecord | None, dict[str, Response]]:
        """A device's record (None: never seen nor configured) and every response, read in
        one transaction."""
        with self.db.session() as s:
            row = s.get(_Device, serial)
            responses = {r.name: _response(r) for r in s.scalars(select(_Response))}
            return (None if row is None else _record(row)), responses

    def seen(self, visits: list[tuple[SeenDevice, datetime]]) -> None:
        """Note get-bootstrapping-data requests (device, time), in one transaction."""
        with self.db.session() as s:
            for device, now in visits:
                row = self._device(s, device.serial)
                row.first_seen = row.first_seen or now
                row.last_seen = now
                row.hw_model, row.os_name, row.os_version = (
                    device.hw_model,
                    device.os_name,
                    device.os_version,
                )

    @staticmethod
    def _device(s: Session, serial: str) -> _Device:
        row = s.get(_Device, serial)
        if row is None:
            row = _Device(serial=serial)
            s.add(row)
        return row

    # -- progress -------------------------------------------------------------------------

    def add_progress(self, record: ProgressRecord) -> None:
        with self.db.session() as s:
            s.add(
                _Progress(
                    serial=record.serial,
                    time=record.time,
                    progress_type=str(record.progress_type),
                    message=record.message,
                    peer=record.peer,
                    report=_report_json(record),
                )
            )
            self._device(s, record.serial).last_progress = str(record.progress_type)

    def progress(self, serial: str | None = None, *, limit: int = 1000) -> list[ProgressRecord]:
        with self.db.session() as s:
            query = select(_Progress).order_by(_Progress.id.desc()).limit(limit)
            if serial is not None:
                query = query.where(_Progress.serial == serial)
            rows = list(s.scalars(query))
        return [
            ProgressRecord(
                serial=r.serial,
                time=r.time,
                progress_type=sztp.ProgressType(r.progress_type),
                message=r.message,
                peer=r.peer,
                **_report_extras(r.report),
            )
            for r in reversed(rows)
        ]
