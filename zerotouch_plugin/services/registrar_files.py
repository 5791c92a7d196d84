"""Names of the files in a registrar folder.

A module of its own so that the short ``zerotouch registrar`` commands (init, allow,
issue-client-cert ...) name them without importing the HTTPS service.
"""

from __future__ import annotations

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CONFIG_FILE",
    "DB_FILE",
    "MASA_CLIENT_CERT",
    "MASA_CLIENT_KEY",
    "REGISTRAR_CERT",
    "REGISTRAR_KEY",
]

CA_CERT, CA_KEY = "ca.pem", "ca.key"
REGISTRAR_CERT, REGISTRAR_KEY = "registrar.pem", "registrar.key"
# Optional: the TLS client identity towards the MASA when the registrar certificate cannot
# be one (an EKU of id-kp-cmcRA alone, as in RFC 8995 Appendix C, fails TLS client checks).
MASA_CLIENT_CERT, MASA_CLIENT_KEY = "masa-client.pem", "masa-client.key"
CONFIG_FILE, DB_FILE = "registrar.toml", "registrar.db"
