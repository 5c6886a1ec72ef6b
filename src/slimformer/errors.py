"""The one exception type users see.

Every failure a user can cause (a missing model, a wrong path, an empty
dataset, a typo in a recipe) is raised as a :class:`SlimformerError` whose
message is a single line naming the problem and the fix. The CLI prints that
line and exits non-zero; Python callers can catch one type.
"""

from __future__ import annotations


class SlimformerError(Exception):
    """A problem the user can fix; the message says what and how."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        message = problem if fix is None else f"{problem}; {fix}"
        super().__init__(" ".join(message.split()))
