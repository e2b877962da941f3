# catq: multi-stage image. The build stage installs the one package list
# (scripts/packages.txt) through scripts/setup; the runtime stage has only the
# runtime libraries, the catq binary, a non-root user and a health check.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/setup scripts/packages.txt scripts/
RUN scripts/setup
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCATQ_BUILD_BENCHMARKS=OFF \
 && cmake --build /build --target catq

FROM debian:12 AS runtime
COPY scripts/setup scripts/packages.txt /opt/catq/scripts/
RUN /opt/catq/scripts/setup --runtime && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/client/catq /usr/local/bin/catq
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/catq catq
USER 10001
WORKDIR /var/lib/catq
# The server's standard gRPC health service (catq health exits 0 only for
# SERVING). Containers that run `catq worker` serve no gRPC: Compose and
# Kubernetes disable or replace this check for them.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["catq", "health", "--server", "127.0.0.1:50051", "--timeout-seconds", "5"]
ENTRYPOINT ["catq"]
CMD ["--help"]
