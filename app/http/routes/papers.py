"""``GET /papers/{paper_id}``: one paper's title, whole abstract and metadata."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.core.errors import NotFound
from app.core.papers import get_paper
from app.core.store import store_errors
from app.core.text import clean_text
from app.http.deps import ServicesDep
from app.http.schemas import ErrorBody, Paper

router = APIRouter(tags=["papers"])


@router.get(
    "/papers/{paper_id:path}",
    response_model=Paper,
    responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def paper(paper_id: str, services: ServicesDep) -> Paper:
    paper_id = clean_text(paper_id)
    with store_errors(services.settings):
        found = await run_in_threadpool(get_paper, services.papers, paper_id)
    if found is None:
        raise NotFound(f"no paper with id {paper_id!r} in collection {services.settings.collection!r}")
    return found
