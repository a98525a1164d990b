# Multi-arch base (amd64, aarch64): Python 3.13, s6-overlay v3, bashio, curl.
# BUILD_FROM is only passed by the legacy builder (build.yaml); the default is the real base.
ARG BUILD_FROM=ghcr.io/home-assistant/base-python:3.13-alpine3.24
FROM ${BUILD_FROM}

ARG BUILD_ARCH
ARG BUILD_VERSION=0.2.0

# Stop gracefully: s6 waits this long (ms) for the service after SIGTERM, within the
# 30 s `timeout` of config.yaml after which Docker kills the container.
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    S6_SERVICES_GRACETIME=25000

# Wheels only: the image has no compiler, and tests/static checks musllinux wheels exist.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY backup_addon/ /app/backup_addon/
COPY rootfs/ /
RUN chmod 755 /etc/s6-overlay/s6-rc.d/backup_321/run /etc/s6-overlay/s6-rc.d/backup_321/finish \
    && python3 -m compileall -q /app/backup_addon

# The container's main command: under s6-overlay only it holds the stdin that
# hassio.addon_stdin writes to; it hands each line to the service through a FIFO.
CMD ["python3", "-m", "backup_addon", "relay-stdin"]

# The add-on's web server answers GET /health with 200 while its service loop is alive.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "curl --fail --silent --max-time 8 --output /dev/null http://127.0.0.1:8099/health || exit 1"]

LABEL \
    io.hass.name="3-2-1 Backup" \
    io.hass.description="Automatic, encrypted Home Assistant backups, copied everywhere and proven restorable" \
    io.hass.type="app" \
    io.hass.version="${BUILD_VERSION}" \
    io.hass.arch="${BUILD_ARCH}" \
    org.opencontainers.image.title="3-2-1 Backup" \
    org.opencontainers.image.source="https://github.com/backup-321/backup-321" \
    org.opencontainers.image.version="${BUILD_VERSION}"
