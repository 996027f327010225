# sidecache as a container: wheels built in one stage, installed in a small final one.
#   docker build -t sidecache .
#   docker run -e SIDECACHE_UPSTREAM=http://app:5000 -p 8080:8080 sidecache
# Settings come from SIDECACHE_* variables (see the README); a config file mounted at
# /etc/sidecache/sidecache.toml is used with -e SIDECACHE_CONFIG=/etc/sidecache/sidecache.toml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN python3 -m pip wheel --no-cache-dir --quiet --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sidecache
COPY --from=build /wheels /wheels
RUN python3 -m pip install --no-cache-dir --quiet --no-index --find-links /wheels sidecache \
    && rm -rf /wheels
# Listen on every interface of the container; the admin listener (/health, /ready) stays on
# the container's loopback, where the HEALTHCHECK reaches it.
ENV SIDECACHE_LISTEN=0.0.0.0:8080 \
    SIDECACHE_ADMIN=127.0.0.1:9180 \
    PYTHONUNBUFFERED=1
USER sidecache
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://' + os.environ.get('SIDECACHE_ADMIN', '127.0.0.1:9180') + '/health', timeout=2)"]
# Exec form: sidecache is PID 1 and gets docker stop's SIGTERM (graceful, shutdown_timeout).
ENTRYPOINT ["sidecache"]
