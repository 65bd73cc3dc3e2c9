"""Dependencies that hand the loaded services and the settings to the routes.

Nothing is global: both live on ``app.state``, put there by the app factory and its lifespan.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from app.answering.engine import PaperQAQueryEngine
from app.core.settings import Settings
from app.retrieval.search import PaperRetriever
from app.services import Services


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not getattr(request.app.state, "ready", False):
        reason = getattr(request.app.state, "not_ready_reason", None)
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the service is not ready: {reason}"
            if reason
            else "the service is starting or stopping; retry in a moment",
            headers={"Retry-After": "5"},
        )
    return services


def get_engine(services: Annotated[Services, Depends(get_services)]) -> PaperQAQueryEngine:
    return services.engine


def get_retriever(services: Annotated[Services, Depends(get_services)]) -> PaperRetriever:
    return services.retriever


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
EngineDep = Annotated[PaperQAQueryEngine, Depends(get_engine)]
RetrieverDep = Annotated[PaperRetriever, Depends(get_retriever)]
