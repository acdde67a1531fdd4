// sd_notify(3) by hand: one datagram to the socket systemd names in
// $NOTIFY_SOCKET, so pvgate.service can be Type=notify without libsystemd.
// systemd learns "the socket is open and the workers serve" (READY=1), "a
// reload is under way" (RELOADING=1 ... READY=1) and "shutting down"
// (STOPPING=1), instead of guessing from the process having started.
//
// Without NOTIFY_SOCKET (spawn-fcgi, a terminal, tests) every call does
// nothing. Sending never fails the caller: systemd's own sd_notify is
// best-effort too, and a service manager that cannot be told is not a reason
// to stop serving.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pvgate {

class Notifier {
 public:
  // The socket in $NOTIFY_SOCKET: a path, or an abstract name written with a
  // leading '@'. Anything else (unset, empty, "vsock:...", too long) gives a
  // notifier that sends nothing.
  static Notifier from_environment();
  explicit Notifier(std::string socket_name);

  bool enabled() const { return !socket_.empty(); }

  // Sends `state` ("READY=1", "KEY=VALUE\nKEY=VALUE") as one datagram. False
  // (and why in `error`, when given) if it could not be sent; true when
  // disabled.
  bool send(std::string_view state, std::string* error = nullptr) const;

  bool ready() const { return send(ready_message()); }
  bool reloading() const { return send(reloading_message(monotonic_usec())); }
  bool stopping() const { return send(stopping_message()); }

  // The messages, for the tests.
  static std::string ready_message() { return "READY=1"; }
  // MONOTONIC_USEC: CLOCK_MONOTONIC when the reload began, which systemd 253+
  // (Type=notify-reload) uses to match the notification to its request.
  static std::string reloading_message(std::uint64_t monotonic_usec);
  static std::string stopping_message() { return "STOPPING=1"; }
  static std::uint64_t monotonic_usec();

 private:
  std::string socket_;  // as in NOTIFY_SOCKET; empty: disabled
};

}  // namespace pvgate
