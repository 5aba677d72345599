# The prediction service: `featurestore serve` on a slim Python base, as a non-root user.
# The feature repo and the model artifact are mounted (see docker-compose.yml), not baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FEATURESTORE_SERVE_HOST=0.0.0.0 \
    FEATURESTORE_SERVE_PORT=6566

RUN useradd --create-home --uid 10001 featurestore
WORKDIR /app
COPY pyproject.toml README.md ./
COPY featurestore ./featurestore
COPY serving ./serving
RUN pip install ".[serving]"

USER featurestore
EXPOSE 6566
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FEATURESTORE_SERVE_PORT', '6566') + '/health', timeout=2)"]
CMD ["featurestore", "serve", "--repo", "/app/feature_repo", "--model", "/app/model", "--workers", "2"]
