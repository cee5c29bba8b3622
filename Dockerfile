# streamwatch worker image.
#
#   docker build -t streamwatch:0.1.0 .
#   docker run --rm -e STREAMWATCH_KAFKA_BOOTSTRAP=... -e STREAMWATCH_REDIS_URL=... streamwatch:0.1.0
#
# The same image runs every command: `streamwatch produce`, `status`, `alerts --follow`.
FROM python:3.11-slim

# STREAMWATCH_DATA_DIR is Faust's local state; each container has its own, as Faust needs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMWATCH_DATA_DIR=/var/lib/streamwatch \
    STREAMWATCH_WEB_PORT=6066

# A fixed numeric uid/gid so Kubernetes `runAsNonRoot` can verify it without a name lookup.
RUN groupadd --gid 10001 streamwatch \
    && useradd --uid 10001 --gid streamwatch --home-dir /var/lib/streamwatch \
        --no-create-home --shell /usr/sbin/nologin streamwatch \
    && mkdir -p /var/lib/streamwatch \
    && chown streamwatch:streamwatch /var/lib/streamwatch

WORKDIR /src
# Only what the build needs: the wheel's metadata (README is the long description) and the code.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && rm -rf /src

WORKDIR /var/lib/streamwatch
USER 10001:10001

# /metrics and /healthz when STREAMWATCH_METRICS_PORT=9108 (Faust's own port, 6066, listens on
# 127.0.0.1 only and is not exposed).
EXPOSE 9108

# The worker serves HTTP on STREAMWATCH_WEB_PORT (127.0.0.1) once it is up; a TCP connect is enough and needs
# no curl in a slim image. Other commands (produce, status) do not listen: disable the check there.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ.get('STREAMWATCH_WEB_PORT', '6066'))), 3).close()"]

# Exec form: the worker is PID 1 and receives SIGTERM itself, so it can leave the consumer group
# and commit offsets before the container stops.
CMD ["streamwatch", "worker"]
