# Prometheus of the CPU flavour of deploy/compose, in place of prom/prometheus:v2.53.3:
# Debian's prometheus (2.42, with promtool) on gpu-cluster/debian:bookworm, laid out like the
# official image: ENTRYPOINT /bin/prometheus, user nobody, data in /prometheus (owned by
# nobody, so a new named volume starts writable), wget for the compose health check.
ARG BASE_IMAGE=gpu-cluster/debian:bookworm
FROM ${BASE_IMAGE}

# /bin is /usr/bin (merged /usr): /bin/prometheus and /bin/promtool are Debian's binaries.
# The web UI loads moment-timezone-with-data.min.js; the package's 190 MB data/ tree is unused.
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget curl \
    && rm -rf /var/lib/apt/lists/* /usr/share/javascript/moment-timezone/data \
    && mkdir -p /prometheus /usr/share/prometheus \
    && chown nobody:nogroup /prometheus \
    && ln -s /etc/prometheus/console_libraries /usr/share/prometheus/console_libraries \
    && ln -s /etc/prometheus/consoles /usr/share/prometheus/consoles \
    && /bin/prometheus --version

USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/prometheus", \
     "--web.console.libraries=/usr/share/prometheus/console_libraries", \
     "--web.console.templates=/usr/share/prometheus/consoles"]
