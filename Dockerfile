# syntax=docker/dockerfile:1
# wch's image: the web app, the workers and the scheduler are the same image with another command
# (see compose.yaml). The package is installed from its wheel, not in editable mode, and runs as a user
# without privileges.

FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY wch ./wch
COPY templates ./templates
COPY static ./static
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin wch
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 # Flask's instance folder (a SQLite database, a secret key file when WCH_SECRET_KEY is unset) must be writable.
 && mkdir -p "$(python -c 'import flask; print(flask.Flask("wch").instance_path)')" \
 && chown wch "$(python -c 'import flask; print(flask.Flask("wch").instance_path)')"
USER wch
WORKDIR /home/wch
# 8000: the web app; 9191: a worker's job metrics (WCH_METRICS_PORT).
EXPOSE 8000 9191
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)" || exit 1
CMD ["wch", "web", "--workers", "4", "--threads", "4", "--bind", "0.0.0.0:8000"]
