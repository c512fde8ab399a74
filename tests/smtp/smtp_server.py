#!/usr/bin/env python3
"""A scriptable SMTP server for finrep's tests (aiosmtpd), listening on loopback.

    smtp_server.py --port N --log FILE [--rules FILE] [--maildir DIR] [--no-parse]

Every accepted message is appended to --log as one JSON line: recipients, Message-ID,
subject, the list headers, the content types and the decoded text/plain part. Rules (JSON) make it misbehave:

    reject        addresses refused at RCPT with 550 5.1.1 (a hard bounce)
    tempfail_once addresses refused at RCPT with 451 the first time, accepted afterwards
    busy_once     answer the first MAIL FROM with 421 (server busy)
    drop_data     addresses whose first DATA is cut: the connection closes before any reply
    delay_ms      wait this long before accepting each message
    auth          {"user": U, "password": P}: a login is required (any other is refused);
                  each message's log line names the user that sent it ("auth_user")

With --no-parse, only recipients, size and time are logged (benchmarks: the server must not
be what is measured). With --maildir, each accepted message is also written there whole, as NNNN-<rcpt>.eml.
Prints "ready" on stdout once listening.
"""
import argparse
import asyncio
import email
import email.policy
import json
import signal
import sys
import threading
import time
import os

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, log_path, rules, maildir=None, parse=True):
        self.parse = parse
        self.log_path = log_path
        self.maildir = maildir
        self.count = 0
        self.rules = rules
        self.seen_tempfail = set()
        self.dropped = set()
        self.busy_done = False
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.rules.get("busy_once") and not self.busy_done:
            self.busy_done = True
            return "421 4.3.2 Service busy, try again later"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        addr = address.lower()
        if addr in self.rules.get("reject", []):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % addr
        if addr in self.rules.get("tempfail_once", []) and addr not in self.seen_tempfail:
            self.seen_tempfail.add(addr)
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        for r in rcpts:
            if r in self.rules.get("drop_data", []) and r not in self.dropped:
                self.dropped.add(r)
                # Cut the connection before answering the end of DATA: nothing accepted.
                server.transport.close()
                return "421 4.4.2 Connection dropped"
        delay = self.rules.get("delay_ms", 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if not self.parse:
            line = json.dumps({"rcpt": rcpts, "size": len(envelope.content), "ts": time.time()})
            with self.lock:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            return "250 2.0.0 OK queued"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
        text_part = msg.get_body(preferencelist=("plain",))
        text = text_part.get_content() if text_part is not None else ""
        record = {
            "rcpt": rcpts,
            "from": envelope.mail_from,
            "message_id": msg.get("Message-ID"),
            "subject": str(msg.get("Subject", "")),
            "to": str(msg.get("To", "")),
            "list_id": str(msg.get("List-Id", "")),
            "list_unsubscribe": str(msg.get("List-Unsubscribe", "")),
            "list_unsubscribe_post": str(msg.get("List-Unsubscribe-Post", "")),
            "parts": parts,
            "text": text,
            "size": len(envelope.content),
        }
        record["ts"] = time.time()
        login = getattr(session, "auth_data", None)
        if login is not None:
            record["auth_user"] = login.login.decode() if hasattr(login, "login") else str(login)
        line = json.dumps(record, ensure_ascii=False)
        with self.lock:
            self.count += 1
            if self.maildir:
                name = "%04d-%s.eml" % (self.count, rcpts[0].replace("/", "_") if rcpts else "unknown")
                with open(os.path.join(self.maildir, name), "wb") as f:
                    f.write(envelope.original_content or envelope.content)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
        return "250 2.0.0 OK queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (a container's: 0.0.0.0)")
    p.add_argument("--log", required=True)
    p.add_argument("--rules")
    p.add_argument("--maildir")
    p.add_argument("--no-parse", action="store_true")
    args = p.parse_args()
    rules = {}
    if args.rules:
        with open(args.rules, encoding="utf-8") as f:
            rules = json.load(f)
    rules = {k: ([a.lower() for a in v] if isinstance(v, list) else v) for k, v in rules.items()}
    if args.maildir:
        os.makedirs(args.maildir, exist_ok=True)
    auth = {}
    if isinstance(rules.get("auth"), dict):
        want = rules["auth"]
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == want["user"] and auth_data.password.decode() == want["password"])
            return AuthResult(success=ok, auth_data=auth_data if ok else None)

        auth = {"auth_required": True, "auth_require_tls": False, "authenticator": authenticator}
    controller = Controller(Handler(args.log, rules, args.maildir, parse=not args.no_parse), hostname=args.host, port=args.port,
                            data_size_limit=20 * 1024 * 1024, **auth)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Also stop when the test that started us goes away (unless stdin is not ours to watch).
    if not sys.stdin.isatty() and os.environ.get("SMTP_IGNORE_STDIN") != "1":
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
