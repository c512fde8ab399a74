# A stand-in for Mailpit: the test suite's SMTP server (aiosmtpd, from Debian's packages) on
# port 1025, every message logged to /mail/messages.jsonl and kept as .eml. The same image
# serves the sample feeds (/feeds) as the `feeds` service. Test use only.
ARG BASE_IMAGE=finrep-test/debian:trixie
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-aiosmtpd \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /mail /feeds
COPY smtp_server.py /usr/local/bin/smtp_server.py
COPY feeds/ /feeds/
ENV SMTP_IGNORE_STDIN=1
CMD ["python3", "/usr/local/bin/smtp_server.py", "--host", "0.0.0.0", "--port", "1025", "--log", "/mail/messages.jsonl", "--maildir", "/mail"]
