# A slim, non-root image. The database defaults to SQLite on the /data volume; set BYOC_DATABASE_URL for
# PostgreSQL, and BYOC_SECRET_KEY and BYOC_PUBLIC_URL in every real deployment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BYOC_DATABASE_URL=sqlite+aiosqlite:////data/byoc.db

RUN useradd --create-home --uid 10001 byoc && mkdir /data && chown byoc /data
WORKDIR /srv/byoc-relay

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --editable .

USER byoc
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]

CMD ["sh", "-c", "byoc db upgrade && exec byoc serve --host 0.0.0.0 --port 8000"]
