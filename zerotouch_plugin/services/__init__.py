"""services layer: all the I/O (HTTPS apps and clients, NETCONF/RESTCONF listeners,
discovery sockets, the join proxy, the pledge agent) over the sans-IO roles; see
docs/architecture.md."""
