"""An app module whose import raises: gorn must exit 3 ("Worker failed to boot.")."""
raise RuntimeError("lc_importerror marker: import failed on purpose")
