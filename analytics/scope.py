"""ProjectScope and ScopedQuery: the tenant filter every read of a tenant's rows takes.

ClickHouse.select accepts only a ScopedQuery and renders its SQL itself, with the
project filter first and bound as a parameter, so no query can forget it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ProjectScope:
    """The one project a query may read. Built by the API from a verified token."""

    project_id: str

    def __post_init__(self) -> None:
        if not self.project_id:
            raise ValueError("a ProjectScope needs a project_id")

    def on(self, table: str, pass_id: str | None = None, *, final: bool = True) -> ScopedQuery:
        """A query over this project's rows of `table` (of one pass, if given)."""
        return ScopedQuery(self, table, pass_id, final=final)


_SCOPE_PARAMETERS = frozenset({"project_id", "pass_id"})


@dataclass(frozen=True)
class ScopedQuery:
    """A read of one project's rows of one table, built up by `where`; FINAL by
    default (the tables fold redelivered rows at merges, FINAL before them)."""

    scope: ProjectScope
    table: str
    pass_id: str | None = None
    conditions: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    final: bool = True

    def where(self, condition: str, **parameters: Any) -> ScopedQuery:
        """This query with one more condition (ClickHouse `{name:Type}` placeholders)."""
        return replace(
            self,
            conditions=(*self.conditions, condition),
            parameters=MappingProxyType({**self.parameters, **_unscoped(parameters)}),
        )

    def render(
        self, columns: str, tail: str, parameters: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The SQL and its bound parameters (ClickHouse.select calls this)."""
        clauses = ["project_id = {project_id:String}"]
        bound: dict[str, Any] = {**self.parameters, **_unscoped(parameters)}
        bound["project_id"] = self.scope.project_id
        if self.pass_id is not None:
            clauses.append("pass_id = {pass_id:String}")
            bound["pass_id"] = self.pass_id
        clauses.extend(f"({c})" for c in self.conditions)
        final = " FINAL" if self.final else ""
        sql = f"SELECT {columns} FROM {self.table}{final} WHERE {' AND '.join(clauses)}"
        return (f"{sql} {tail}" if tail else sql), bound


def _unscoped(parameters: Mapping[str, Any]) -> Mapping[str, Any]:
    """`parameters`, refused if one would replace the scope's own."""
    taken = _SCOPE_PARAMETERS.intersection(parameters)
    if taken:
        raise ValueError(f"{sorted(taken)} are the scope's parameters, not a condition's")
    return parameters
