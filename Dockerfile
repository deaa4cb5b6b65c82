# syncgate on Debian 12, in two stages: the build (compilers, -dev packages) and the runtime
# (the shared libraries only). It runs as an unprivileged user; the binary carries
# cap_net_bind_service so that the user can bind 443 as well as the 8080 and 9901 it
# documents. Build: docker build -t syncgate:0.1.0 .   Run: docker run -p 8080:8080
# -v $PWD/conf:/etc/syncgate/conf:ro syncgate:0.1.0 (the image's default config points at an
# upstream on the host's loopback; mount your own).
# The release build is profile-guided only with the test dependencies (Node.js, the SDK,
# browsers), which an image should not carry: this builds without a profile (PGO=0).
FROM debian:12 AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      cmake make gcc pkg-config libevent-dev libcjson-dev libssl-dev libinih-dev node-llhttp libhiredis-dev git \
      ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN PGO=0 scripts/build.sh build 2 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null \
 && build/syncgate --version

FROM debian:12-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libevent-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 libcjson1 libssl3 libinih1 libhiredis0.14 \
      ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin syncgate
COPY --from=build /src/build/syncgate /usr/local/bin/syncgate
COPY --from=build /src/docs/syncgate.8 /usr/local/share/man/man8/syncgate.8
COPY conf/syncgate.conf /etc/syncgate/conf/syncgate.conf
# the capability is set here, in the image that runs it (a copy between stages may drop it)
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep /usr/local/bin/syncgate \
 && apt-get purge -y -qq libcap2-bin && rm -rf /var/lib/apt/lists/*
USER 65532:65532
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/syncgate"]
CMD ["-c", "/etc/syncgate/conf/syncgate.conf"]
