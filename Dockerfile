# One image for every platform component; compose.yml picks the component with the command,
# such as `gateway`, `relay` or `consumer payments` (the arguments of the `festival` command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 festival

WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY consumers ./consumers
COPY festival ./festival
COPY gateway ./gateway
COPY producers ./producers
COPY schemas ./schemas
# NOTE: the live screen's mqtt.js comes from the npm registry and is not in this image yet;
# add a node build stage here once the repository has its package.json.
RUN pip install .

USER festival
# Inside the compose network the gateway must accept connections from other containers; the
# host publishes its port on loopback only (see compose.yml).
ENV FESTIVAL_HTTP_HOST=0.0.0.0 \
    FESTIVAL_DATA_DIR=/home/festival/data
EXPOSE 8000 9464

ENTRYPOINT ["festival"]
CMD ["gateway"]
