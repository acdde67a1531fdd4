// Work that needs a thread only when a file descriptor says so: the FastCGI
// workers watch `poll_fd()` in their own epoll set (one-shot) beside the
// connections, and the worker that sees it readable calls `drive()` and then
// re-arms it. CurlUpstream's calls run this way in pvgate (upstream.h), so
// the worker that reads Pipwave's answer also writes the reply.
#pragma once

namespace pvgate {

class Polled {
 public:
  virtual ~Polled() = default;
  // Readable (an epoll fd, or any pollable fd) while drive() has work.
  virtual int poll_fd() const = 0;
  // Does what is ready now and returns; never blocks on I/O. Safe to call
  // from any thread, also while another thread is in it.
  virtual void drive() = 0;
};

}  // namespace pvgate
