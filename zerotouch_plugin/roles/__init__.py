"""roles layer (see DESIGN.md)."""
