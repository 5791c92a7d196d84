"""artifacts layer (see DESIGN.md)."""
