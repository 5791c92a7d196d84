"""zerotouch: zero-touch bootstrapping (BRSKI, SZTP) as a NETCONF/RESTCONF server plugin."""

__version__ = "0.1.0"
