"""An app module whose attribute is not callable: gorn must exit 4."""
app = 42
