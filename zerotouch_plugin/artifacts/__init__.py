"""artifacts layer: vouchers, CMS, EST messages, certificates, the GRASP codec and YANG
validation; bytes in, validated values out, nothing trusted implicitly. See
docs/architecture.md."""
