"""ProjectScope: the tenant filter every query takes; no query can be built without one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectScope:
    """The one project a query may read. Built by the API from a verified token."""

    project_id: str

    def __post_init__(self) -> None:
        if not self.project_id:
            raise ValueError("a ProjectScope needs a project_id")

    def where(self, pass_id: str | None = None) -> tuple[str, dict[str, str]]:
        """The mandatory WHERE clause and its parameters (bound, never interpolated)."""
        params = {"project_id": self.project_id}
        clause = "project_id = {project_id:String}"
        if pass_id is not None:
            clause += " AND pass_id = {pass_id:String}"
            params["pass_id"] = pass_id
        return clause, params
