# hftsig image: the package built from source (Cython extensions compiled here),
# with the notebook and bus extras so one image serves every hftsig compose service.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc g++ make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Build requirements first (iisignature builds only without build isolation).
RUN pip install "Cython>=3.0,<4" "numpy>=2.0,<3" "setuptools>=69" wheel \
 && pip install --no-build-isolation iisignature==0.24

COPY pyproject.toml setup.py README.md ./
COPY hftsig ./hftsig
COPY connectors ./connectors
RUN pip install --no-build-isolation ".[notebooks,bus]"

# Recordings go to /data, notebooks are mounted at /app/notebooks (see docker-compose.yml);
# run as an unprivileged user.
RUN useradd --create-home --uid 1000 hftsig && mkdir -p /data && chown hftsig /data
USER hftsig
VOLUME ["/data"]
ENTRYPOINT ["hftsig"]
CMD ["--help"]
