"""ScopedQuery: every tenant read carries its project filter, bound, first."""

import pytest

from sentinel_usage.analytics.scope import ProjectScope


def test_a_query_renders_the_project_filter_first_and_binds_it() -> None:
    query = ProjectScope("proj-a").on("activity_log", "SP-1").where("success = {ok:Bool}", ok=True)
    sql, parameters = query.render("count()", "LIMIT {limit:UInt32}", {"limit": 5})
    assert sql == (
        "SELECT count() FROM activity_log FINAL WHERE project_id = {project_id:String} "
        "AND pass_id = {pass_id:String} AND (success = {ok:Bool}) LIMIT {limit:UInt32}"
    )
    assert parameters == {"project_id": "proj-a", "pass_id": "SP-1", "ok": True, "limit": 5}


def test_conditions_accumulate_without_changing_the_query_they_came_from() -> None:
    base = ProjectScope("proj-a").on("alerts", final=False)
    narrowed = base.where("state = {state:String}", state="firing").where("a OR b")
    assert base.render("*", "", {})[0] == (
        "SELECT * FROM alerts WHERE project_id = {project_id:String}"
    )
    # A condition with OR cannot widen the scope: each one is parenthesised.
    assert narrowed.render("*", "", {})[0].endswith(
        "WHERE project_id = {project_id:String} AND (state = {state:String}) AND (a OR b)"
    )


@pytest.mark.parametrize("name", ["project_id", "pass_id"])
def test_a_condition_cannot_rebind_the_scope(name: str) -> None:
    query = ProjectScope("proj-a").on("activity_log")
    with pytest.raises(ValueError, match="scope's parameters"):
        query.where("1", **{name: "proj-b"})
    with pytest.raises(ValueError, match="scope's parameters"):
        query.render("*", "", {name: "proj-b"})


def test_a_scope_needs_a_project() -> None:
    with pytest.raises(ValueError, match="needs a project_id"):
        ProjectScope("")
