"""create_app(): the FastAPI application, its routers and its error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from sentinel_usage.api.responses import RETRY_AFTER_SECONDS
from sentinel_usage.api.routes import activity, alerts, events, health, oauth, passes, ui, usage
from sentinel_usage.api.services import ApiServices
from sentinel_usage.core.errors import DependencyUnavailableError


def create_app(services: ApiServices) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="sentinel-usage",
        summary="Usage analytics of Sentinel Passes",
        version="0.1.0",
        lifespan=lifespan,
        # operationIds are the handlers' names (`list_activity`), stable for clients
        # and for the document's links.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.services = services
    app.include_router(events.router)
    app.include_router(passes.router)
    app.include_router(oauth.router)
    app.include_router(activity.router)
    app.include_router(usage.router)
    app.include_router(alerts.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC), name="ui-static")
    if services.demo_api is not None:
        # The demo API behind SentinelGateway: what an agent's calls look like.
        app.mount("/demo", services.demo_api, name="demo")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette's Allow names the methods of one route; RFC 9110 wants every
            # method of the resource (GET and POST of /passes are two routes).
            allowed = _methods_of(app, request.url.path)
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return await http_exception_handler(request, exc)

    @app.exception_handler(DependencyUnavailableError)
    async def unavailable(request: Request, exc: DependencyUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"temporarily unavailable: {exc}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    return app


def _methods_of(app: FastAPI, path: str) -> list[str]:
    methods = {
        method
        for route in app.router.routes
        if isinstance(route, Route) and route.path_regex.fullmatch(path)
        for method in route.methods or ()
    }
    return sorted(methods - {"HEAD"})
