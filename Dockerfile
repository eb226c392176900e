# syntax=docker/dockerfile:1
# One image: CMD runs the service; docker-compose.yml overrides it to run the emulator.
# No secret is baked in: KLAVIYO_PRIVATE_API_KEY and WEBHOOK_TOKEN come from the environment.

# Both stages start from one base, pinned by digest (the tag stays for the reader): the
# multi-platform index of python:3.11-slim (Python 3.11.16, Debian 13), built 2026-08-25, as
# docker-library/repo-info records it (repos/python/remote/3.11-slim.md, commit bc9bbb47).
# To move it: read the current index digest there, or `docker buildx imagetools inspect
# python:3.11-slim`, and change both lines.
FROM python:3.11-slim@sha256:3c1dfceb3f1267d4d378e7883cddf35c58757bab98d70bba30b6e02e808fa21d AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
WORKDIR /build
# Exactly the lock, every wheel checked against its hash; then the package alone.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# A regular (not editable) install: the final stage copies the venv and nothing else.
RUN pip install --no-cache-dir --no-deps .

FROM python:3.11-slim@sha256:3c1dfceb3f1267d4d378e7883cddf35c58757bab98d70bba30b6e02e808fa21d
LABEL org.opencontainers.image.title="klaviyo-destination" \
      org.opencontainers.image.description="Delivers RudderStack events to Klaviyo (revision 2023-02-22; 2026-04-15 with KLAVIYO_API_VERSION=v3)"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --no-log-init --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# slim has no curl; the standard library is enough. PORT is read so an override stays healthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=2)"]
CMD ["klaviyo-destination", "serve"]
