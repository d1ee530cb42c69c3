#!/usr/bin/python3
"""A recording smarthost for tests/smtp_client.rs, built on aiosmtpd (not tidemail code).

Usage: sink.py PORT DIR [options]
  --reply ADDR=CODE TEXT   answer RCPT TO:<ADDR> with "CODE TEXT" (repeatable)
  --no-pipelining          do not announce PIPELINING (announced by default)
  --no-ehlo                answer EHLO with 502, so the client must fall back to HELO
  --size N                 announce SIZE N and refuse larger MAIL FROM SIZE= values
  --cut-after N            after 354, read N bytes of message data, then drop the connection

Every accepted message becomes DIR/N.json (envelope, HELO name, peer, whether the client
pipelined MAIL) and DIR/N.eml (the content as received: CRLF kept, dots unstuffed).
Prints "ready" on stdout once listening.
"""

import argparse
import asyncio
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Recorder:
    def __init__(self, directory, replies, pipelining):
        self.directory = directory
        self.replies = replies
        self.pipelining = pipelining
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd handles pipelined input but does not announce PIPELINING itself.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
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
        }
        with open(base + ".json.tmp", "w") as out:
            json.dump(record, out)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as M%d" % self.count


def make_server_class(options):
    class Sink(SMTP):
        async def smtp_EHLO(self, hostname):
            if options.no_ehlo:
                await self.push("502 5.5.2 Error: command not recognized")
                return
            await super().smtp_EHLO(hostname)

        async def smtp_MAIL(self, arg):
            # Something already buffered behind MAIL FROM means the client pipelined.
            buffered = getattr(self._reader, "_buffer", b"")
            self.session.pipelined_mail = len(buffered) > 0
            await super().smtp_MAIL(arg)

        async def smtp_DATA(self, arg):
            if options.cut_after is None or not self.envelope.rcpt_tos:
                return await super().smtp_DATA(arg)
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            received = 0
            while received < options.cut_after:
                chunk = await self._reader.read(options.cut_after - received)
                if not chunk:
                    break
                received += len(chunk)
            self.transport.abort()

    return Sink


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("directory")
    parser.add_argument("--reply", action="append", default=[])
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--no-ehlo", action="store_true")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--cut-after", type=int, default=None)
    options = parser.parse_args()

    replies = {}
    for item in options.reply:
        address, reply = item.split("=", 1)
        replies[address.lower()] = reply
    handler = Recorder(options.directory, replies, not options.no_pipelining)
    server_class = make_server_class(options)

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: server_class(handler, hostname="sink.test", data_size_limit=options.size or None),
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
