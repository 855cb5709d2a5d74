# personalize: one image for the server (`personalize serve`) and the learner (`personalize learn`).
# docs/deploy.md ("Containers") says how it is used, and what of it was verified where no container
# daemon runs (tests/test_deploy.py runs this file's commands as processes and lints it with hadolint).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY personalize ./personalize
COPY plugins ./plugins
COPY simulator ./simulator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/personalize personalize
COPY --from=build /install /usr/local
USER 10001
WORKDIR /var/lib/personalize
# SQLite (one container, no PostgreSQL) keeps its file here: mount a volume on it.
ENV PERSONALIZE_DATA_DIR=/var/lib/personalize PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/personalizer/v1.0/health', timeout=4)"]
ENTRYPOINT ["personalize"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
