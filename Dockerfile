# warning — production image. Point it at real Redis and MQTT with WARNING_REDIS_URL / WARNING_MQTT_URL;
# without them it runs the embedded default with data in the /var/lib/warning volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md CHANGELOG.md ./
COPY warning ./warning
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/warning --create-home warning
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/warning.example.toml /etc/warning/warning.example.toml
USER warning
WORKDIR /var/lib/warning
ENV WARNING_DATA_DIR=/var/lib/warning \
    WARNING_SERVER_HOST=0.0.0.0 \
    WARNING_SERVER_PORT=8080 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/warning"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["warning"]
CMD ["serve"]
