"""The SZTP bootstrap server (RFC 8572): RESTCONF service over the sans-IO role."""
