# Phú Yên mail server. Build: docker build -t phuyen-mailserver .
# Stage 1 builds wheels of the project and its dependencies; stage 2 installs
# them into a slim runtime that runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY policy ./policy
COPY storage ./storage
COPY smtp ./smtp
COPY imap_gateway ./imap_gateway
COPY mailserver ./mailserver
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --home-dir /var/lib/mailserver --shell /usr/sbin/nologin mailserver \
    && mkdir -p /var/lib/mailserver /etc/mailserver \
    && chown mailserver:mailserver /var/lib/mailserver
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/mailserver.yaml config/policy.yaml /etc/mailserver/
ENV MAILSERVER_CONFIG=/etc/mailserver/mailserver.yaml
VOLUME ["/var/lib/mailserver", "/etc/mailserver"]
EXPOSE 25 465 587 143 993 443
USER mailserver
CMD ["sh", "-c", "mailserver init && exec mailserver serve"]
