"""roles layer: the sans-IO protocol logic; inputs, ``now`` and random bytes in, results
or actions out; no sockets, clock, asyncio or database. See docs/architecture.md."""
