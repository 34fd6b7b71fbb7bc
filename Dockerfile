# The orchestra image, for the in-cluster reconciler (examples/kubernetes/reconciler.yaml).
#   docker build -t registry.example.org/orchestra:0.1 .
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
# from this checkout (distribution orchestra-gitops; PyPI's "orchestra" is another project)
RUN pip install --no-cache-dir /src && rm -rf /src \
 && useradd --create-home --uid 10001 orchestra
USER 10001
WORKDIR /home/orchestra
ENTRYPOINT ["orchestra"]
CMD ["--help"]
