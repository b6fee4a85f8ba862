# Edge proxy of the CPU flavour of deploy/compose, in place of nginx:1.27.3-alpine: Debian's
# nginx on gpu-cluster/debian:bookworm (built by scripts/build-images.sh; no registry needed).
# The compose file runs it as 1000:100 with `sh -c '... exec nginx -e /dev/stderr -c
# /var/lib/gpucluster/nginx/nginx.conf'`: that config (gpucluster.runtime.edge.
# container_nginx_values) keeps the pid and temp files in /tmp and logs to stdout/stderr; the
# health check uses curl.
ARG BASE_IMAGE=gpu-cluster/debian:bookworm
FROM ${BASE_IMAGE}

# Like the official image: logs to the container's output. Debian's default temp paths are
# made writable for a non-root user of group users (100) as well as for www-data, so that
# configs without their own *_temp_path also run as 1000:100.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx curl wget \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log \
    && install -d -o www-data -g users -m 0770 /var/lib/nginx/body /var/lib/nginx/proxy \
        /var/lib/nginx/fastcgi /var/lib/nginx/uwsgi /var/lib/nginx/scgi \
    && nginx -v

EXPOSE 80
# Graceful stop: open requests (streamed generations) finish within the stop grace period.
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
