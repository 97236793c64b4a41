# PostgreSQL from Debian's packages, started the way the official `postgres` image is (POSTGRES_USER, POSTGRES_DB,
# POSTGRES_PASSWORD_FILE, PGPORT; data in /var/lib/postgresql/data). For hosts that reach Debian's mirror but no
# image registry; elsewhere compose.yaml uses the official image.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
USER postgres
ENTRYPOINT ["postgres-entrypoint"]
CMD ["postgres"]
