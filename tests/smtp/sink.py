#!/usr/bin/python3
"""A recording smarthost for tests/smtp_client.rs and tests/smtp_tls_auth.rs, built on aiosmtpd
(not tidemail code).

Usage: sink.py PORT DIR [options]
  --reply ADDR=CODE TEXT   answer RCPT TO:<ADDR> with "CODE TEXT" (repeatable)
  --no-pipelining          do not announce PIPELINING (announced by default)
  --no-ehlo                answer EHLO with 502, so the client must fall back to HELO
  --size N                 announce SIZE N and refuse larger MAIL FROM SIZE= values
  --cut-after N            after 354, read N bytes of message data, then drop the connection
  --cut-times K            do --cut-after (or --drop-after-dot) only for the first K messages
  --slow-data SECS         wait SECS before answering the final dot (a slow smarthost)
  --drop-after-dot         after 354, read the whole message and its final dot, then drop the
                           connection without a reply (the client cannot know it was taken)
  --tls-cert FILE          offer STARTTLS with this PEM certificate (chain) ...
  --tls-key FILE           ... and this PEM key
  --require-tls            refuse everything but EHLO/STARTTLS/QUIT before TLS (530)
  --auth USER:PASS         offer AUTH PLAIN LOGIN (after TLS only, unless --auth-plaintext)
                           and accept these credentials
  --auth-plaintext         offer AUTH without TLS too
  --chunking               announce CHUNKING and take BDAT (RFC 3030; aiosmtpd has no BDAT of
                           its own); --cut-after and --drop-after-dot then apply to the chunk
                           data: drop after N bytes of it, or after the whole LAST chunk

Every accepted message becomes DIR/N.json (envelope, HELO name, peer, whether the client
pipelined MAIL, whether the session was TLS, the authenticated user, "via": DATA or BDAT) and DIR/N.eml (the
content as received: CRLF kept, dots unstuffed). Every AUTH command appends "MECHANISM" (never
the credentials) to DIR/auth.log.
Prints "ready" on stdout once listening.
"""

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class Recorder:
    def __init__(self, directory, replies, pipelining):
        self.directory = directory
        self.replies = replies
        self.pipelining = pipelining
        self.count = 0
        self.slow_data = 0
        self.chunking = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd handles pipelined input but does not announce PIPELINING itself.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        if self.chunking:
            responses.insert(1, "250-CHUNKING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        if self.slow_data:
            await asyncio.sleep(self.slow_data)
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        with open(base + ".eml.tmp", "wb") as out:
            out.write(envelope.original_content)
        record = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "helo": session.host_name,
            "esmtp": session.extended_smtp,
            "peer": list(session.peer[:2]),
            "pipelined": getattr(session, "pipelined_mail", False),
            "tls": session.ssl is not None,
            "tls_version": tls_version(session),
            "auth_user": auth_user(session),
            "via": getattr(envelope, "via", "DATA"),
        }
        with open(base + ".json.tmp", "w") as out:
            json.dump(record, out)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as M%d" % self.count


def tls_version(session):
    ssl_object = (session.ssl or {}).get("ssl_object")
    return ssl_object.version() if ssl_object is not None else None


def auth_user(session):
    if not session.authenticated or session.auth_data is None:
        return None
    login = getattr(session.auth_data, "login", None)
    return login.decode() if isinstance(login, bytes) else login


def make_authenticator(credentials):
    user, password = credentials.split(":", 1)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: aiosmtpd then answers "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)

    return authenticate


# How many messages were cut so far (shared by all connections).
CUTS = {"done": 0}


def make_server_class(options):
    class Sink(SMTP):
        async def smtp_EHLO(self, hostname):
            if options.no_ehlo:
                await self.push("502 5.5.2 Error: command not recognized")
                return
            await super().smtp_EHLO(hostname)

        async def smtp_AUTH(self, arg):
            # Only the mechanism: the rest of the line carries the credentials.
            with open(os.path.join(options.directory, "auth.log"), "a") as log:
                log.write((arg or "").split(" ")[0] + "\n")
            await super().smtp_AUTH(arg)

        async def smtp_MAIL(self, arg):
            # Something already buffered behind MAIL FROM means the client pipelined.
            buffered = getattr(self._reader, "_buffer", b"")
            self.session.pipelined_mail = len(buffered) > 0
            await super().smtp_MAIL(arg)

        async def smtp_DATA(self, arg):
            cutting = options.cut_after is not None or options.drop_after_dot
            if options.cut_times is not None and cutting:
                cutting = CUTS["done"] < options.cut_times
            if not cutting or not self.envelope.rcpt_tos:
                return await super().smtp_DATA(arg)
            CUTS["done"] += 1
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            if options.drop_after_dot:
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = await self._reader.read(65536)
                    if not chunk:
                        break
                    data += chunk
                with open(os.path.join(options.directory, "dropped.log"), "a") as log:
                    log.write("%d\n" % len(data))
                self.transport.abort()
                return
            received = 0
            while received < options.cut_after:
                chunk = await self._reader.read(options.cut_after - received)
                if not chunk:
                    break
                received += len(chunk)
            self.transport.abort()

        async def smtp_BDAT(self, arg):
            words = (arg or "").split()
            if not options.chunking or not words or not words[0].isdigit() or len(words) > 2:
                await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
                return
            size = int(words[0])
            last = len(words) == 2 and words[1].upper() == "LAST"
            cutting = options.cut_after is not None or (options.drop_after_dot and last)
            if options.cut_times is not None and cutting:
                cutting = CUTS["done"] < options.cut_times
            if cutting and self.envelope.rcpt_tos:
                CUTS["done"] += 1
                wanted = size if options.cut_after is None else min(size, options.cut_after)
                data = await self._reader.readexactly(wanted)
                if options.cut_after is None:
                    with open(os.path.join(options.directory, "dropped.log"), "a") as log:
                        log.write("%d\n" % len(data))
                self.transport.abort()
                return
            # The chunk is read whole whatever the answer, so the next command lines up.
            data = await self._reader.readexactly(size)
            if self.envelope.mail_from is None:
                await self.push("503 5.5.1 Error: need MAIL command")
                return
            if not self.envelope.rcpt_tos:
                await self.push("554 5.5.1 Error: no valid recipients")
                return
            chunks = getattr(self.envelope, "chunks", [])
            chunks.append(data)
            self.envelope.chunks = chunks
            if not last:
                await self.push("250 2.0.0 Ok: %d octets" % size)
                return
            self.envelope.original_content = b"".join(chunks)
            self.envelope.content = self.envelope.original_content
            self.envelope.via = "BDAT"
            status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
            self._set_post_data_state()
            await self.push(status)

    return Sink


def main():
    # aiosmtpd warns about its own use of a deprecated attribute on every AUTH.
    logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("directory")
    parser.add_argument("--reply", action="append", default=[])
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--no-ehlo", action="store_true")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--cut-after", type=int, default=None)
    parser.add_argument("--cut-times", type=int, default=None)
    parser.add_argument("--drop-after-dot", action="store_true")
    parser.add_argument("--slow-data", type=float, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--require-tls", action="store_true")
    parser.add_argument("--auth")
    parser.add_argument("--auth-plaintext", action="store_true")
    parser.add_argument("--chunking", action="store_true")
    options = parser.parse_args()

    replies = {}
    for item in options.reply:
        address, reply = item.split("=", 1)
        replies[address.lower()] = reply
    handler = Recorder(options.directory, replies, not options.no_pipelining)
    handler.slow_data = options.slow_data
    handler.chunking = options.chunking
    server_class = make_server_class(options)
    extra = {}
    if options.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        extra["tls_context"] = context
        extra["require_starttls"] = options.require_tls
    if options.auth:
        extra["authenticator"] = make_authenticator(options.auth)
        extra["auth_require_tls"] = not options.auth_plaintext

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: server_class(handler, hostname="sink.test", data_size_limit=options.size or None, **extra),
            host="127.0.0.1",
            port=options.port,
        )
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
