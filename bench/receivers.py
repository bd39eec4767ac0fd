"""Reference receivers that the ingest benchmark compares the gateway with.

`bare`: a FastAPI endpoint that only returns 202. `naive`: verifies the signature with the
`standardwebhooks` package, parses the body with `json`, and commits the raw delivery and one
outbox row in its own transaction per request, as a first implementation would.

    python bench/receivers.py bare|naive PORT [DATABASE_URL SECRET]
"""

import json
import sys
import uuid

import asyncpg
import uvicorn
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/nix")
    async def receive() -> Response:
        return Response(status_code=202)

    return app


def naive_app(database_url: str, secret: str) -> FastAPI:
    app = FastAPI()
    verifier = Webhook(secret)
    state: dict[str, asyncpg.Pool] = {}

    @app.on_event("startup")
    async def open_pool() -> None:
        state["pool"] = await asyncpg.create_pool(database_url, min_size=10, max_size=10)

    @app.post("/webhooks/nix")
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=401)
        event = json.loads(body)

        async with state["pool"].acquire() as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO bench_inbox (delivery_id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                request.headers["webhook-id"], body,
            )
            if not inserted:
                return Response(status_code=200)
            await connection.execute(
                "INSERT INTO bench_outbox (event_id, payload) VALUES ($1, $2)", uuid.uuid4(), json.dumps(event["data"])
            )
        return Response(status_code=202)

    return app


NAIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_inbox (delivery_id text PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS bench_outbox (event_id uuid PRIMARY KEY, payload text NOT NULL);
"""


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    app = bare_app() if kind == "bare" else naive_app(sys.argv[3], sys.argv[4])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", access_log=False, log_level="warning")
