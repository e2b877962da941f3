# catq: multi-stage image. The build stage installs the one package list
# (scripts/packages.txt) through scripts/setup; the runtime stage has only the
# runtime libraries, the catq binary and a non-root user.
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
ENTRYPOINT ["catq"]
CMD ["--help"]
