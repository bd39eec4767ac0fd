"""RFC 9457 problem details, the body of every error response of the HTTP API."""

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:festival:problem:"


class FieldError(BaseModel):
    """One field at fault. It names the field and never carries the value that was sent."""

    pointer: str = Field(description="JSON Pointer (RFC 6901) to the field, as a URI fragment", examples=["#/data/amount"])
    code: str = Field(description="stable English error code", examples=["invalid_amount"])
    detail: str = Field(description="explanation in Brazilian Portuguese")


class Problem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "urn:festival:problem:invalid_signature",
        "title": "Invalid signature",
        "status": 401,
        "code": "invalid_signature",
        "detail": "Nenhuma assinatura do webhook confere com os segredos ativos.",
    }]})

    type: str = Field(description="URI that identifies the kind of problem")
    title: str = Field(description="short English summary of the kind of problem")
    status: int
    code: str = Field(description="stable English error code for programs")
    detail: str = Field(description="explanation of this occurrence in Brazilian Portuguese")
    instance: str | None = None
    errors: list[FieldError] | None = None
