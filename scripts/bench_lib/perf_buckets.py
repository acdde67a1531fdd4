#!/usr/bin/env python3
"""Where pvgate's CPU goes, per request stage, from a `perf record -g` file of scripts/bench
--perf (best with --perf-dwarf): each sample is charged to the first stage whose function is
on its stack, innermost stage first (so a malloc inside the logger counts as logging).

    python3 scripts/bench_lib/perf_buckets.py DIR/rejected.0.perf.data [more.perf.data ...]
"""

import collections
import subprocess
import sys

# (stage, substrings of a frame), checked in this order against the whole stack.
STAGES = [
    ("log line (LogLine, JSON encode, write)",
     ("pvgate::Logger::", "pvgate::LogLine::")),
    ("reply out (write, FCGX_Finish_r, re-arm)", ("pvgate::FcgiServer::finish",)),
    ("throttle (keys, SHA-1, store)", ("pvgate::throttle_check", "pvgate::throttle_")),
    ("upstream loop: curl (HTTP, TLS, sockets)", ("curl_multi_socket_action",
                                                  "curl_multi_add_handle",
                                                  "curl_multi_remove_handle")),
    ("upstream hand-over (set-up, queue, wake)", ("pvgate::CurlUpstream::post_async",)),
    ("sign", ("pvgate::sign", "pvgate::pipwave_signature")),
    ("decode body (JSON/form)", ("pvgate::decode_json_fields", "pvgate::decode_form")),
    ("validate", ("pvgate::validate",)),
    ("reply (encode JSON, headers)", ("pvgate::make_reply", "pvgate::encode_client_reply")),
    ("sanitize Pipwave's answer", ("pvgate::Handler::answered",)),
    ("metrics", ("pvgate::Metrics::",)),
    ("handler, other", ("pvgate::Handler::",)),
    ("FastCGI params to std::string", ("pvgate::(anonymous namespace)::Params",
                                       "pvgate::(anonymous namespace)::text")),
    ("FCGX_Accept_r (read request)", ("FCGX_Accept_r",)),
    ("FCGX_Finish_r (flush, free)", ("FCGX_Finish_r",)),
    ("FCGX_PutStr / GetStr", ("FCGX_PutStr", "FCGX_GetStr")),
    ("serve, other", ("pvgate::FcgiServer::serve",)),
    ("re-arm / close connection", ("pvgate::FcgiServer::watch",
                                   "pvgate::FcgiServer::close_connection")),
    ("worker, other (epoll_wait, accept)", ("pvgate::FcgiServer::worker",)),
    ("upstream loop, other (epoll_wait, timers)", ("pvgate::CurlUpstream::Loop::run",)),
]


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
        for name, keys in STAGES:
            if any(k in stack for k in keys):
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
