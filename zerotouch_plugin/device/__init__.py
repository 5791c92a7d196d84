"""device layer: the reference device's datastores, YANG-validated edits and the plugin
host interface, as data; locking, threads and listeners belong to services. See
docs/architecture.md."""
