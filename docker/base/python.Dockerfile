# A local stand-in for Docker Hub's python:3.11-slim-bookworm, for machines that cannot pull
# it (scripts/compose_smoke.sh builds it when the tag is missing). Built FROM a debootstrap
# minbase of bookworm imported with `docker import`; it adds what our Dockerfiles rely on
# in the official image: Python 3.11 (Debian's 3.11.2), `python`/`pip` on the PATH, pip
# usable system-wide (no PEP 668 marker, as in the official image), UTF-8 and CA certificates.
ARG ROOTFS=llm3d/bookworm-minbase:local
# hadolint ignore=DL3006
FROM ${ROOTFS}

ENV LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv python3-setuptools python3-wheel ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED

CMD ["python3"]
