"""The `labelfree` command line: one module per command group, all driving the same core as the GUI.

``main`` builds the parser and guards every command; ``options`` holds the options that `predict`
and `batch` share; ``predict``, ``batch``, ``train``, ``models`` and ``system`` each register their
commands. The desktop app is a separate entry point (``labelfree_app.__main__``), not part of this package.
"""
