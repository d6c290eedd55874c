"""An app module that fails while it is imported."""

raise RuntimeError("broken-app-import-marker")
