"""The operator dashboard at `/painel` and the figures it shows, from `/v1/painel`."""

from fastapi import APIRouter

router = APIRouter(tags=["dashboard"])
