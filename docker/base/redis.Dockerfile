# A local stand-in for Docker Hub's redis:7-bookworm (Debian bookworm's Redis 7.0), for
# machines that cannot pull it (scripts/compose_smoke.sh builds it when the tag is missing).
# Like the official image: redis-server and redis-cli on the PATH, WORKDIR /data owned by
# the redis user, and an entrypoint that drops to that user and turns protected mode off
# when no configuration file is given (the server is only reachable on its container network).
ARG ROOTFS=llm3d/bookworm-minbase:local
# hadolint ignore=DL3006
FROM ${ROOTFS}

ENV LANG=C.UTF-8
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data

COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
