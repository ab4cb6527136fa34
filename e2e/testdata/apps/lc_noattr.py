"""An app module without the requested attribute: gorn must exit 4."""
other = None
