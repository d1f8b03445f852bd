# Phú Yên provincial mail server: the image the service provider runs (docs/operations.md).
#
#   podman build --format docker -t phuyen-mailserver .     # --format docker keeps the HEALTHCHECK
#   docker build -t phuyen-mailserver .
#
# Stage 1 builds wheels of every dependency and of the server. Stage 2 is a
# slim runtime that installs only those wheels (no compiler, no network)
# into /opt/mailserver and runs as the non-root user `mailserver`.
# `make container-check` builds this file unchanged and runs it (.ci/).

FROM python:3.11-slim AS build
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer and the pip cache
# survive changes to the code.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && python3 -m pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY policy ./policy
COPY storage ./storage
COPY smtp ./smtp
COPY imap_gateway ./imap_gateway
COPY mailserver ./mailserver
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# A fixed uid/gid, so that bind-mounted volumes and backups can be given to it (docs/operations.md).
ARG MAILSERVER_UID=10025
RUN groupadd --system --gid "$MAILSERVER_UID" mailserver \
    && useradd --system --uid "$MAILSERVER_UID" --gid mailserver --home-dir /var/lib/mailserver \
        --no-create-home --shell /usr/sbin/nologin mailserver
# The venv has its own copy of the interpreter (--copies): only that copy gets the capability to
# bind ports below 1024 (bind-low-ports.py), no other program of the image.
COPY deploy/container/bind-low-ports.py /usr/share/mailserver/bind-low-ports.py
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv --copies --without-pip /opt/mailserver \
    && python3 -m pip --python /opt/mailserver/bin/python install --no-index --no-cache-dir \
        --no-warn-script-location /wheels/*.whl \
    && python3 /usr/share/mailserver/bind-low-ports.py /opt/mailserver/bin/python*
COPY deploy/container/entrypoint.sh /usr/local/bin/mailserver-entrypoint
# The commented templates, written into the empty config volume at the first start (first-config.py,
# with MAILSERVER_HOSTNAME, MAILSERVER_DOMAINS, MAILSERVER_CLAMD when given).
COPY config/mailserver.yaml config/policy.yaml /usr/share/mailserver/config/
COPY deploy/container/first-config.py /usr/share/mailserver/first-config.py
RUN mkdir -p /var/lib/mailserver /etc/mailserver \
    && chown mailserver:mailserver /var/lib/mailserver /etc/mailserver \
    && chmod 0750 /var/lib/mailserver /etc/mailserver

ENV PATH=/opt/mailserver/bin:$PATH \
    MAILSERVER_CONFIG=/etc/mailserver/mailserver.yaml \
    PYTHONUNBUFFERED=1
# Data: Maildir, indexes, the directory database, the queue, logs (Đ7.2: 6 months), archives, the
# self-signed certificate. Config: mailserver.yaml, policy.yaml, edited notice templates.
VOLUME ["/var/lib/mailserver", "/etc/mailserver"]
# SMTP (MX), submissions, submission, IMAP, IMAPS, the web pages (password, autoconfig, /healthz)
EXPOSE 25 465 587 143 993 443
USER mailserver
WORKDIR /var/lib/mailserver
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["mailserver", "healthcheck", "--timeout", "8"]
# SIGTERM drains and stops (shutdown_grace); SIGHUP reloads policy.yaml and the certificate.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mailserver-entrypoint"]
CMD ["serve"]
