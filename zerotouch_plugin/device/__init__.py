"""device layer (see DESIGN.md)."""
