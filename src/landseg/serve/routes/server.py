"""What the server tells about itself: that it is up, its model card, the uploads it accepts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from landseg.serve.schemas import LimitsInfo, ModelInfo
from landseg.serve.state import ServeState, serve_state

router = APIRouter(prefix="/api", tags=["server"])
State = Annotated[ServeState, Depends(serve_state)]


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/model", response_model=ModelInfo)
def model_card(state: State) -> dict[str, Any]:
    """The model card: classes and colours, training provenance, validation mIoU."""
    return state.model_info


@router.get("/limits", response_model=LimitsInfo)
def upload_limits(state: State) -> LimitsInfo:
    """What uploads the server accepts and how many jobs it runs and queues."""
    return state.limits
