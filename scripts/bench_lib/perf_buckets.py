#!/usr/bin/env python3
"""Where pvgate's CPU goes, per request stage, from a `perf record -g` file of scripts/bench
--perf (best with --perf-dwarf): each sample is charged to the first stage whose function is
on its stack, innermost stage first (so a malloc inside the logger counts as logging).

    python3 scripts/bench_lib/perf_buckets.py DIR/rejected.0.perf.data [more.perf.data ...]
"""

import collections
import subprocess
import sys

# (stage, substrings of a frame), checked in this order against the whole stack; a key
# ending in "$" is a whole function name (so FcgiServer::drive is not drive_polled).
STAGES = [
    ("log line (LogLine, JSON encode, write)",
     ("pvgate::Logger::", "pvgate::LogLine::")),
    ("metrics (shared file counters)", ("pvgate::Metrics::", "pvgate::MetricsFile")),
    ("stage route, merchant, origin, method", ("pvgate::route$", "pvgate::merchant$",
                                               "pvgate::origin$", "pvgate::method$",
                                               "pvgate::operations$")),
    ("stage size, decode, validate", ("pvgate::size$", "pvgate::decode$",
                                      "pvgate::validate$", "pvgate::decode_json_fields")),
    ("stage phone (libphonenumber)", ("pvgate::phone$",)),
    ("stage challenge", ("pvgate::challenge$", "pvgate::challenge_checked$")),
    ("stage throttle (keys, store)", ("pvgate::throttle$",)),
    ("stage session", ("pvgate::session$", "pvgate::settle_session")),
    ("stage sign (SHA-1, call body)", ("pvgate::sign$",)),
    ("stage answer (sanitize Pipwave's reply)", ("pvgate::answer$",)),
    ("upstream: the call set up and sent (post_async: curl, TLS, socket)",
     ("pvgate::CurlUpstream::post_async",)),
    ("upstream: answers read (curl, TLS, socket)", ("curl_multi_socket_action",
                                                     "curl_multi_add_handle",
                                                     "curl_multi_remove_handle",
                                                     "curl_multi_info_read")),
    ("handler, other (reply, exchange reset)", ("pvgate::Handler::",)),
    ("completion taken by a worker", ("pvgate::FcgiServer::take_completion",)),
    ("FastCGI read, parse, write (drive)", ("pvgate::FcgiServer::drive$",
                                            "pvgate::fcgi::")),
    ("upstream: driving it (poll fd, lock, epoll, timers)",
     ("pvgate::CurlUpstream::Loop::", "pvgate::FcgiServer::drive_polled")),
    ("accept / close connection", ("pvgate::FcgiServer::accept_one",
                                   "pvgate::FcgiServer::close_owned")),
    ("worker, other (epoll_wait, gate)", ("pvgate::FcgiServer::worker",)),
]


def matches(key, stack, frames):
    if not key.endswith("$"):
        return key in stack
    name = key[:-1]
    return any(f == name or f.startswith(name + "(") for f in frames)


def buckets(path):
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--stdio", "-g",
                          "folded,0,caller,count", "--percent-limit", "0"],
                         capture_output=True, text=True, check=True).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        head, _, stack = line.partition(" ")
        if not head.isdigit() or ";" not in stack:
            continue
        n = int(head)
        frames = stack.strip().split(";")
        for name, keys in STAGES:
            if any(matches(k, stack, frames) for k in keys):
                counts[name] += n
                break
        else:
            counts["elsewhere"] += n
    return counts


def main():
    for path in sys.argv[1:]:
        c = buckets(path)
        total = sum(c.values()) or 1
        print(f"{path}: {total} samples")
        for name, n in c.most_common():
            print(f"  {100.0 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
