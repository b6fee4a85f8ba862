# Alertmanager of the CPU flavour of deploy/compose, in place of prom/alertmanager:v0.27.0:
# Debian's prometheus-alertmanager (0.25) on gpu-cluster/debian:bookworm, laid out like the
# official image: ENTRYPOINT /bin/alertmanager, user nobody, data in /alertmanager (owned by
# nobody, so a new named volume starts writable), a default config in /etc/alertmanager,
# sh and wget for the compose entrypoint and health check.
ARG BASE_IMAGE=gpu-cluster/debian:bookworm
FROM ${BASE_IMAGE}

# Debian names the binary prometheus-alertmanager; /bin is /usr/bin (merged /usr).
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager wget curl \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s prometheus-alertmanager /usr/bin/alertmanager \
    && mkdir -p /etc/alertmanager /alertmanager \
    && cp /etc/prometheus/alertmanager.yml /etc/alertmanager/alertmanager.yml \
    && chown nobody:nogroup /alertmanager \
    && /bin/alertmanager --version \
    && amtool check-config /etc/alertmanager/alertmanager.yml

USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
