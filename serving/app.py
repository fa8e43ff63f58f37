"""The RAG service: `medlake serve` runs this FastAPI app under uvicorn.

    POST /v1/ask       question (+ person_key, filters) -> cited answer, audited
    POST /v1/search    query (+ person_key, filters)    -> ranked chunks with provenance
    POST /v1/feedback  rating of an earlier answer      -> gold.feedback
    GET  /health       liveness and what is configured (no data, no token needed)

Every /v1 route needs `Authorization: Bearer <token>` with a token from
`MEDLAKE_API_TOKENS`; OpenAPI docs are at /docs and /openapi.json.
"""
from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      WithJsonSchema, model_validator)

from medlake.config import get_settings
from serving import rag
from serving.auth import Principal, authenticate, parse_tokens
from serving.feedback import give_feedback

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]
PersonKey = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
# Strict models refuse "5" for a number, but JSON Schema counts 5.0 as an integer.
Int = Annotated[int, BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)]


def _iso_date(v):
    # FastAPI validates parsed JSON in Python mode, where strict dates refuse strings.
    if isinstance(v, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v):
        return date.fromisoformat(v)
    raise ValueError("a date is a string YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})]
DocType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_. -]{1,64}$")]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    doc_type: DocType | None = Field(None, description="note or report type, e.g. `Progress note`")
    date_from: IsoDate | None = Field(None, description="earliest (shifted) document date, inclusive")
    date_to: IsoDate | None = Field(None, description="latest (shifted) document date, inclusive")

    @model_validator(mode="after")
    def _ordered(self):
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from must not be after date_to")
        return self


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: Text = Field(description="the clinical question; identifiers are scrubbed")
    person_key: PersonKey | None = Field(None, description="restrict to one person")
    k: Int = Field(5, ge=1, le=50, description="chunks to retrieve")
    filters: Filters = Field(default_factory=Filters)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    query: Text
    person_key: PersonKey | None = None
    k: Int = Field(10, ge=1, le=100)
    filters: Filters = Field(default_factory=Filters)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    answer_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
    rating: Int = Field(ge=1, le=5, description="1 = wrong or harmful ... 5 = correct and complete")
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class CitationOut(BaseModel):
    chunk_id: str
    source_table: str
    source_version: int
    source_key: str
    score: float


class FlagsOut(BaseModel):
    model_used: bool
    cited_ok: bool
    uncited: bool
    unknown_citations: list[str]
    fallback_reason: str | None


class AskResponse(BaseModel):
    answer_id: str
    answer: str
    citations: list[CitationOut]
    model: str | None
    flags: FlagsOut


class HitOut(CitationOut):
    document_id: str
    person_key: str | None
    doc_type: str | None
    doc_date: date | None
    text: str


class SearchResponse(BaseModel):
    hits: list[HitOut]


class FeedbackResponse(BaseModel):
    feedback_id: str
    answer_id: str


class Health(BaseModel):
    status: str
    llm: str
    auth: str


_bearer = HTTPBearer(auto_error=False, description="a token from MEDLAKE_API_TOKENS")


def principal(request: Request,
              creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    who = authenticate(request.app.state.tokens, creds.credentials if creds else None)
    if who is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "Send `Authorization: Bearer <token>` with a token from "
                            "MEDLAKE_API_TOKENS.", headers={"WWW-Authenticate": "Bearer"})
    return who


def scoped(scope: str):
    def check(who: Principal = Depends(principal)) -> Principal:
        if scope not in who.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"The token of {who.name!r} does not carry the {scope!r} scope.")
        return who
    return check


ERRORS = {400: {"description": "the body is not valid JSON"},
          401: {"description": "no or unknown bearer token"},
          403: {"description": "the token lacks this route's scope"},
          422: {"description": "the request does not match the schema"}}


def create_app(tokens: str | None = None) -> FastAPI:
    """The app, with bearer tokens from `tokens` (default: MEDLAKE_API_TOKENS)."""
    app = FastAPI(title="medlake RAG service", version="1", description=__doc__)
    app.state.tokens = parse_tokens(get_settings().api_tokens if tokens is None else tokens)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        s = get_settings()
        llm = (s.llm_model or "default") if s.llm_base_url else "none (evidence-only answers)"
        return Health(status="ok", llm=llm,
                      auth=f"{len(app.state.tokens)} token(s) configured")

    @app.post("/v1/ask", response_model=AskResponse, responses=ERRORS)
    def ask(req: AskRequest, who: Principal = Depends(scoped("ask"))) -> AskResponse:
        a = rag.ask(req.question, k=req.k, person_key=req.person_key, asked_by=who.name,
                    **req.filters.model_dump())
        return AskResponse(answer_id=a.answer_id, answer=a.answer, model=a.model,
                           citations=[CitationOut(**vars(c)) for c in a.citations],
                           flags=FlagsOut(**vars(a.flags)))

    @app.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
    def search(req: SearchRequest, who: Principal = Depends(scoped("search"))) -> SearchResponse:
        from medlake import privacy

        hits = rag.retrieve(privacy.scrub_text(req.query) or "", k=req.k,
                            person_key=req.person_key, **req.filters.model_dump())
        return SearchResponse(hits=[HitOut(**vars(rag.Citation.of(h)), document_id=h.document_id,
                                           person_key=h.person_key, doc_type=h.doc_type,
                                           doc_date=h.doc_date, text=h.text) for h in hits])

    @app.post("/v1/feedback", response_model=FeedbackResponse, status_code=201,
              responses={**ERRORS, 404: {"description": "no such answer_id"}})
    def feedback(req: FeedbackRequest,
                 who: Principal = Depends(scoped("feedback"))) -> FeedbackResponse:
        if rag.audited(req.answer_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"No answer {req.answer_id} in {rag.AUDIT}; rate the "
                                "answer_id that /v1/ask returned.")
        row = give_feedback(req.answer_id, req.rating, req.comment, who.name)
        return FeedbackResponse(feedback_id=row["feedback_id"], answer_id=req.answer_id)

    return app
