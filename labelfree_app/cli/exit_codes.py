"""Exit statuses of the `labelfree` commands (0 is success)."""

from __future__ import annotations

EXIT_ERROR = 1  # a user error, a failed input, or an unexpected error (logged)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, or a batch stopped before its end
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool cut off by `head`
