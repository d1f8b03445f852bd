"""Errors that name what the operator or user must fix.

Every refusal in the project carries the field it is about, so the CLI can
print one line naming the field and protocols can map it to a specific code.
"""

from __future__ import annotations

from dataclasses import dataclass


class MailserverError(Exception):
    """A refusal with the field it concerns; the CLI prints `field: message`."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class ValidationFailed(MailserverError):
    """Input broke a rule (name, date, password, quota floor ...)."""


class Conflict(MailserverError):
    """The thing exists already, or is taken (an address, a unit)."""


class NotFound(MailserverError):
    """A named account, unit, alias or message does not exist."""


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(MailserverError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__(None, "\n".join(str(p) for p in problems))
