#!/usr/bin/python3
"""A small authoritative DNS server on loopback for tests/smtp_dns.rs (dnspython, not our code).

Usage: dns_server.py LOGFILE [--servfail NAME]... RECORD...

RECORD is one zone-file line with an absolute owner name, e.g. "mx.test. 300 IN MX 10 mx1.test.".
It answers over UDP on 127.0.0.1 on a port the kernel picks, printed as "ready PORT" on stdout.
For a question it answers the records of that name and type; a name that has records of other
types gets an empty NOERROR answer (NODATA); a name given with --servfail gets SERVFAIL; any
other name gets NXDOMAIN. Every question received is appended to LOGFILE as "NAME TYPE" and
flushed at once, before the answer is sent, so an empty log means that no query arrived.
"""

import socket
import sys

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def main():
    args = sys.argv[1:]
    log_path = args.pop(0)
    servfail = set()
    records = {}
    while args:
        arg = args.pop(0)
        if arg == "--servfail":
            servfail.add(dns.name.from_text(args.pop(0)))
            continue
        owner, ttl, rdclass, rdtype, *data = arg.split()
        rrset = dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, " ".join(data))
        key = (rrset.name, rrset.rdtype)
        if key in records:
            records[key].union_update(rrset)
        else:
            records[key] = rrset
    names = {name for (name, _) in records}

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print("ready", sock.getsockname()[1], flush=True)
    with open(log_path, "a", encoding="ascii") as log:
        while True:
            wire, peer = sock.recvfrom(4096)
            try:
                query = dns.message.from_wire(wire)
            except Exception as error:  # a malformed packet is logged too: it still is traffic
                log.write(f"malformed {error}\n")
                log.flush()
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            for question in query.question:
                name = question.name
                log.write(f"{name.to_text().lower()} {dns.rdatatype.to_text(question.rdtype)}\n")
                log.flush()
                lowered = dns.name.from_text(name.to_text().lower())
                if lowered in servfail:
                    response.set_rcode(dns.rcode.SERVFAIL)
                elif (lowered, question.rdtype) in records:
                    found = records[(lowered, question.rdtype)]
                    # The answer carries the name as asked (0x20 case randomisation safe).
                    answer = dns.rrset.RRset(name, dns.rdataclass.IN, found.rdtype)
                    answer.update(found)
                    answer.ttl = found.ttl
                    response.answer.append(answer)
                elif lowered not in names:
                    response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), peer)


if __name__ == "__main__":
    main()
