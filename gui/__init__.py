"""Tunebench window: PySide6 + pyqtgraph. Imports only the stdlib-only engine modules
(protocol, config, paths, workspace); every torch job runs in an engine process."""
