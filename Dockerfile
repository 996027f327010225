# sidecache as a container: wheels built in one stage, installed in a small final one.
#   docker build -t sidecache .
#   docker network create web                 # the app's container must be on it: --network web --name app
#   docker run --rm --network web -p 127.0.0.1:8080:8080 -e SIDECACHE_UPSTREAM=http://app:5000 sidecache
# (`app` resolves only on a user-defined network both containers share, or as a compose service;
# -p 8080:8080 without an address would publish on every interface of the host.)
# Configuration: the image's own file, /etc/sidecache/sidecache.toml (deploy/docker/sidecache.toml:
# the embedded default, listening on 0.0.0.0:8080, admin on the container's 127.0.0.1:9180).
# Mount your own file at that path to replace it whole: the image sets no SIDECACHE_LISTEN or
# SIDECACHE_ADMIN, so nothing overrides the file's addresses. SIDECACHE_* variables you pass
# (-e) stand for command-line flags and win over the file, as flags do.
# BASE: the Python image to build on; scripts/docker-smoke passes a locally built one on
# machines that reach no image registry.
# SIDECACHE_COMPILE: 1 (the default) builds the compiled wheel (mypyc; README, "The compiled
# build"), with a C compiler and Python's headers in the build stage only; 0 the pure-Python one.
ARG BASE=python:3.11-slim
ARG SIDECACHE_COMPILE=1

FROM ${BASE} AS build
ARG SIDECACHE_COMPILE
WORKDIR /src
RUN if [ "$SIDECACHE_COMPILE" = 1 ]; then \
        headers=$(python3 -c 'import os, sysconfig; print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")') \
        && apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gcc libc6-dev $headers >/dev/null; \
    fi
COPY pyproject.toml setup.py README.md ./
COPY build_support ./build_support
COPY proxy ./proxy
RUN SIDECACHE_COMPILE=$SIDECACHE_COMPILE python3 -m pip wheel --no-cache-dir --quiet --wheel-dir /wheels .

FROM ${BASE}
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sidecache
COPY --from=build /wheels /wheels
RUN python3 -m pip install --no-cache-dir --quiet --no-index --find-links /wheels sidecache \
    && rm -rf /wheels
COPY deploy/docker/sidecache.toml /etc/sidecache/sidecache.toml
COPY deploy/docker/healthcheck.py /usr/local/lib/sidecache/healthcheck.py
# SIDECACHE_CONFIG names a file, it sets no value: whatever file is at that path decides.
ENV SIDECACHE_CONFIG=/etc/sidecache/sidecache.toml \
    PYTHONUNBUFFERED=1
USER sidecache
EXPOSE 8080
# GET /health on the admin listener the running config names (an --admin argument, else
# SIDECACHE_ADMIN, else the file's [admin] listen): a mounted file without an admin listener
# makes the check fail and says so (docker inspect); keep `[admin] listen = "127.0.0.1:9180"`
# in it, or run with --no-healthcheck.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "/usr/local/lib/sidecache/healthcheck.py"]
# Exec form: sidecache is PID 1 and gets docker stop's SIGTERM (graceful, shutdown_timeout).
ENTRYPOINT ["sidecache"]
