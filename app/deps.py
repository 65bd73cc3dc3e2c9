"""Dependencies that hand the loaded services and the settings to the routes.

Nothing is global: both live on ``app.state`` and were put there by the app factory and lifespan.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from app.answer import Answerer
from app.services import Services
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or not getattr(request.app.state, "ready", False):
        reason = getattr(request.app.state, "not_ready_reason", None)
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the service is not ready: {reason}" if reason
            else "the service is starting or stopping; retry in a moment",
            headers={"Retry-After": "5"},
        )
    return services


def get_answerer(services: Annotated[Services, Depends(get_services)]) -> Answerer:
    return services.answerer


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
