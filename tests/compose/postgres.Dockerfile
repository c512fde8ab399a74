# A stand-in for the official postgres image, built from Debian's packages on a base made by
# debootstrap (no registry here): the same environment (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB), data directory and `postgres -c …` command. Test use only.
ARG BASE_IMAGE=finrep-test/debian:trixie
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-17 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/17/bin:$PATH
# Debian's package creates the user; its uid is the package's choice.
# hadolint ignore=DL3066
USER postgres
ENTRYPOINT ["postgres-entrypoint.sh"]
CMD ["postgres"]
