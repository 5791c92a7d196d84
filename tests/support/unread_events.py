"""Notifications sent faster than one subscriber reads them: ``flood`` emits events until
that subscriber's session is gone (or a cap, so that a device that never closes it fails
the test instead of hanging), yielding to the event loop so that the transports write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from zerotouch_plugin.device.datastore import Datastores

NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
SUBSCRIBE = f'<create-subscription xmlns="{NOTIF}"/>'
CHANGE = {"ietf-netconf-notifications:netconf-config-change": {"datastore": "running"}}
EVENT_BYTES = 200  # a netconf-config-change notification is longer than this


async def flood(stores: Datastores, alive: Callable[[], bool], cap: int) -> int:
    """The events emitted until ``alive()`` turned false; ``cap`` if it never did."""
    emitted = 0
    while alive() and emitted < cap:
        stores.emit_event(CHANGE)
        emitted += 1
        if emitted % 20 == 0:
            await asyncio.sleep(0)
    return emitted
