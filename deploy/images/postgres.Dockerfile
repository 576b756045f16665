# syntax=docker/dockerfile:1
# PostgreSQL for compose.yaml on machines that cannot pull the official `postgres` image, from
# the base's Debian packages (15 on bookworm). Takes POSTGRES_USER, POSTGRES_PASSWORD (required)
# and POSTGRES_DB as the official image does, initialises $PGDATA on the first start and runs as
# the `postgres` user.
#   podman build --format docker -f deploy/images/postgres.Dockerfile -t launchdeck/postgres \
#     --build-arg BASE_IMAGE=localhost/launchdeck-base:bookworm .
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE}
# No cluster of Debian's own (`main`): the entry point makes one in $PGDATA.
# Packages without their docs, man pages and translations (dpkg path-exclude), apt's caches
# removed: about 100 MB less.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
      'path-exclude=/usr/share/locale/*' > /etc/dpkg/dpkg.cfg.d/launchdeck-slim \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && ln -s "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)" /usr/lib/postgresql/bin \
 && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY deploy/images/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
STOPSIGNAL SIGINT
HEALTHCHECK --interval=2s --timeout=5s --start-period=30s --retries=30 \
  CMD ["pg_isready", "-q", "-h", "127.0.0.1"]
ENTRYPOINT ["postgres-entrypoint"]
