// fcgi::RequestParser (the FastCGI records a connection sends), as the server
// drives it: begin -> set_body_limit, complete -> serve -> next(), stop at a
// protocol error. Invariants: the same bytes fed whole, one byte at a time
// and in pieces cut where the input says give the same events, requests and
// protocol answers; the limits hold (params, kept body); everything the
// parser writes is well-framed records of the types it may send; and the
// reply written for each request frames back to the same text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fcgi_protocol.h"
#include "fuzz_check.h"

using namespace pvgate;
using pvgate_fuzz::as_text;

namespace {

struct Request {
  std::vector<std::pair<std::string, std::string>> params;
  std::string body;
  std::uint64_t body_bytes = 0;
  bool keep_conn = false;
  bool discard_overflow = false;
  std::uint16_t id = 0;
  bool operator==(const Request& o) const {
    return params == o.params && body == o.body && body_bytes == o.body_bytes &&
           keep_conn == o.keep_conn && discard_overflow == o.discard_overflow && id == o.id;
  }
};

struct Trace {
  std::vector<fcgi::Step> steps;
  std::vector<Request> requests;
  std::string out;
  bool operator==(const Trace& o) const {
    return steps == o.steps && requests == o.requests && out == o.out;
  }
};

struct Record {
  int type;
  std::string content;
};

// Splits `out` into records; aborts on bad framing.
std::vector<Record> records(std::string_view out) {
  std::vector<Record> recs;
  while (!out.empty()) {
    FUZZ_CHECK(out.size() >= fcgi::kHeaderBytes, out);
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(out[i]); };
    FUZZ_CHECK(b(0) == 1, out);
    const std::size_t length = (b(4) << 8) | b(5);
    const std::size_t padding = b(6);
    FUZZ_CHECK((length + padding) % 8 == 0, out);
    FUZZ_CHECK(out.size() >= 8 + length + padding, out);
    recs.push_back({b(1), std::string(out.substr(8, length))});
    out.remove_prefix(8 + length + padding);
  }
  return recs;
}

void check_reply(const Request& r, const HttpRequest& request) {
  HttpReply reply;
  reply.status = 200 + static_cast<int>(r.body.size() % 400);
  reply.content_type = "text/plain";
  reply.body = request.body;
  reply.log_line = request.method;
  std::string out;
  fcgi::append_reply(out, r.id, reply);
  const auto recs = records(out);
  FUZZ_CHECK(recs.size() >= 3 && recs.back().type == 3, out);
  std::string text;
  for (const auto& rec : recs) {
    if (rec.type == 6) text += rec.content;
  }
  FUZZ_CHECK(text.rfind("Status: ", 0) == 0, text);
  FUZZ_CHECK(text.size() >= reply.body.size() &&
                 text.compare(text.size() - reply.body.size(), std::string::npos, reply.body) == 0,
             text);
}

// Feeds `data` cut at the sizes `cut` returns, as the server would.
template <typename Cut>
Trace run(std::string_view data, std::size_t limit, Cut cut) {
  Trace t;
  fcgi::RequestParser p;
  std::size_t at = 0;
  while (at < data.size()) {
    const std::size_t n = std::min(cut(at), data.size() - at);
    std::size_t used = 0;
    while (used < n) {
      const fcgi::FeedResult r = p.feed(data.data() + at + used, n - used, t.out);
      FUZZ_CHECK(r.consumed <= n - used, data);
      used += r.consumed;
      if (r.step == fcgi::Step::more) {
        FUZZ_CHECK(used == n, data);
        break;
      }
      t.steps.push_back(r.step);
      if (r.step == fcgi::Step::error) {
        FUZZ_CHECK(p.error() != nullptr, data);
        return t;
      }
      if (r.step == fcgi::Step::begin) p.set_body_limit(limit);
      if (r.step == fcgi::Step::complete) {
        Request req;
        std::size_t params_bytes = 0;
        for (const auto& [name, value] : p.params()) {
          req.params.emplace_back(name, value);
          params_bytes += name.size() + value.size();
        }
        FUZZ_CHECK(params_bytes <= fcgi::kMaxParamsBytes, data);
        req.body = p.body();
        FUZZ_CHECK(req.body.size() <= limit, req.body);
        FUZZ_CHECK(p.body().size() <= p.body_bytes(), data);
        req.body_bytes = p.body_bytes();
        req.keep_conn = p.keep_conn();
        req.discard_overflow = p.discard_overflow();
        req.id = p.request_id();
        FUZZ_CHECK(req.id != 0, data);
        HttpRequest request;
        fcgi::fill_request(p.params(), request);
        request.body = req.body;
        check_reply(req, request);
        t.requests.push_back(std::move(req));
        if (p.discard_overflow()) return t;  // the server answers and closes
        p.next();
      }
    }
    at += used;
  }
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the body limit (small, so dropping bytes is exercised).
  const std::size_t limit = 1 + data[0] % 128;
  const std::string_view input = as_text(data + 1, size - 1);

  const Trace whole = run(input, limit, [&](std::size_t) { return input.size(); });
  const Trace bytes = run(input, limit, [](std::size_t) { return std::size_t{1}; });
  FUZZ_CHECK(whole == bytes, input);
  // Pieces of 1..16 bytes, their sizes taken from the input itself.
  const Trace pieces = run(input, limit, [&](std::size_t at) {
    return std::size_t{1} + static_cast<unsigned char>(input[at]) % 16;
  });
  FUZZ_CHECK(whole == pieces, input);

  // The parser only ever writes END_REQUEST, GET_VALUES_RESULT and UNKNOWN_TYPE.
  for (const auto& rec : records(whole.out)) {
    FUZZ_CHECK(rec.type == 3 || rec.type == 10 || rec.type == 11, whole.out);
  }
  return 0;
}
