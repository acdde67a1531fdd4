#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "fcgi_protocol.h"

using namespace pvgate;
using namespace pvgate::fcgi;

namespace {

std::string record(Type type, std::uint16_t id, const std::string& content,
                   std::size_t padding = 0) {
  std::string r;
  r.push_back(1);
  r.push_back(static_cast<char>(type));
  r.push_back(static_cast<char>(id >> 8));
  r.push_back(static_cast<char>(id & 0xFF));
  r.push_back(static_cast<char>(content.size() >> 8));
  r.push_back(static_cast<char>(content.size() & 0xFF));
  r.push_back(static_cast<char>(padding));
  r.push_back(0);
  return r + content + std::string(padding, '\xAA');
}

std::string length(std::size_t n, bool force_long = false) {
  if (n < 128 && !force_long) return std::string(1, static_cast<char>(n));
  return {static_cast<char>(0x80 | (n >> 24)), static_cast<char>((n >> 16) & 0xFF),
          static_cast<char>((n >> 8) & 0xFF), static_cast<char>(n & 0xFF)};
}

std::string pair(const std::string& name, const std::string& value, bool force_long = false) {
  return length(name.size(), force_long) + length(value.size(), force_long) + name + value;
}

std::string begin(std::uint16_t id, bool keep = true, int role = 1) {
  const char body[8] = {static_cast<char>(role >> 8),
                        static_cast<char>(role & 0xFF),
                        static_cast<char>(keep ? 1 : 0),
                        0,
                        0,
                        0,
                        0,
                        0};
  return record(Type::begin_request, id, std::string(body, 8));
}

const std::string kParams = pair("REQUEST_METHOD", "POST") +
                            pair("DOCUMENT_URI", "/pvgate/send-token") +
                            pair("CONTENT_TYPE", "application/json") + pair("CONTENT_LENGTH", "5");

// A whole request: BEGIN, params in one record, body in one record.
std::string request(std::uint16_t id, const std::string& params, const std::string& body,
                    std::size_t padding = 0) {
  std::string r =
      begin(id) + record(Type::params, id, params, padding) + record(Type::params, id, "", padding);
  if (!body.empty()) r += record(Type::stdin_stream, id, body, padding);
  return r + record(Type::stdin_stream, id, "", padding);
}

struct Events {
  std::vector<Step> steps;
  std::string out;
  std::size_t consumed = 0;
};

// Feeds `input` in pieces of `chunk` bytes (0: all at once), calling
// set_body_limit(limit) at each begin, until complete, error, or the end.
Events drive(RequestParser& p, const std::string& input, std::size_t chunk = 0,
             std::size_t limit = 4097) {
  Events e;
  std::size_t at = 0;
  while (at < input.size()) {
    const std::size_t n = chunk == 0 ? input.size() - at : std::min(chunk, input.size() - at);
    std::size_t used = 0;
    while (used < n) {
      const FeedResult r = p.feed(input.data() + at + used, n - used, e.out);
      used += r.consumed;
      if (r.step == Step::more) break;
      e.steps.push_back(r.step);
      if (r.step == Step::begin) p.set_body_limit(limit);
      if (r.step == Step::complete || r.step == Step::error) {
        e.consumed = at + used;
        return e;
      }
    }
    at += used;
  }
  e.consumed = at;
  return e;
}

struct Rec {
  int type;
  int id;
  std::string content;
};

// Parses records written by the serializer, checking their framing.
std::vector<Rec> parse_records(const std::string& out) {
  std::vector<Rec> recs;
  std::size_t at = 0;
  while (at < out.size()) {
    REQUIRE(out.size() - at >= 8);
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(out[at + i]); };
    CHECK(b(0) == 1);
    const std::size_t len = (b(4) << 8) | b(5);
    const std::size_t pad = b(6);
    CHECK((len + pad) % 8 == 0);
    REQUIRE(out.size() - at >= 8 + len + pad);
    recs.push_back({b(1), (b(2) << 8) | b(3), out.substr(at + 8, len)});
    at += 8 + len + pad;
  }
  return recs;
}

std::string param(const RequestParser& p, std::string_view name) {
  for (const auto& [n, v] : p.params())
    if (n == name) return std::string(v);
  return "<absent>";
}

}  // namespace

TEST_CASE("fcgi: a whole request, at once and one byte at a time") {
  const std::string input = request(1, kParams, "hello", 0);
  for (const std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{7},
                                  std::size_t{8}, std::size_t{9}}) {
    INFO("chunk " << chunk);
    RequestParser p;
    CHECK(p.idle());
    const Events e = drive(p, input, chunk);
    REQUIRE(e.steps == std::vector<Step>{Step::begin, Step::complete});
    CHECK(e.consumed == input.size());
    CHECK(e.out.empty());
    CHECK(p.request_id() == 1);
    CHECK(p.keep_conn());
    CHECK(p.body() == "hello");
    CHECK(p.body_bytes() == 5);
    CHECK(param(p, "REQUEST_METHOD") == "POST");
    CHECK(param(p, "CONTENT_LENGTH") == "5");
    CHECK(p.params().size() == 4);
    CHECK_FALSE(p.idle());
    // Nothing more is taken until next().
    std::string out;
    CHECK(p.feed("x", out).consumed == 0);
    p.next();
    CHECK(p.idle());
  }
}

TEST_CASE("fcgi: padding on every record, fed one byte at a time") {
  const std::string input = request(7, kParams, "body!", 7);
  RequestParser p;
  const Events e = drive(p, input, 1);
  REQUIRE(e.steps == std::vector<Step>{Step::begin, Step::complete});
  CHECK(e.consumed == input.size());
  CHECK(p.body() == "body!");
  CHECK(param(p, "DOCUMENT_URI") == "/pvgate/send-token");
}

TEST_CASE("fcgi: params across several records, a pair split between them") {
  const std::string all = kParams + pair("HTTP_ORIGIN", "https://shop.example");
  std::string input = begin(2);
  for (std::size_t at = 0; at < all.size(); at += 5)
    input += record(Type::params, 2, all.substr(at, 5), 3);
  input += record(Type::params, 2, "") + record(Type::stdin_stream, 2, "");
  for (const std::size_t chunk : {std::size_t{0}, std::size_t{1}}) {
    RequestParser p;
    const Events e = drive(p, input, chunk);
    REQUIRE(e.steps == std::vector<Step>{Step::begin, Step::complete});
    CHECK(p.params().size() == 5);
    CHECK(param(p, "HTTP_ORIGIN") == "https://shop.example");
    CHECK(p.body().empty());
  }
}

TEST_CASE("fcgi: 4-byte name and value lengths") {
  const std::string long_value(300, 'v');
  const std::string long_name = "HTTP_" + std::string(140, 'N');
  const std::string params =
      pair(long_name, long_value) + pair("SHORT", "x", true) + pair("EMPTY", "");
  RequestParser p;
  const Events e = drive(p, request(3, params, ""), 1);
  REQUIRE(e.steps == std::vector<Step>{Step::begin, Step::complete});
  REQUIRE(p.params().size() == 3);
  CHECK(param(p, long_name) == long_value);
  CHECK(param(p, "SHORT") == "x");
  CHECK(param(p, "EMPTY").empty());
}

TEST_CASE("fcgi: params at kMaxParamsBytes and one past") {
  const auto params_of = [](std::size_t total) {
    // One pair with 4-byte lengths: 4 + 4 + 1 name byte + value.
    return pair("N", std::string(total - 9, 'v'), true);
  };
  const auto send = [](const std::string& params) {
    std::string input = begin(1);
    for (std::size_t at = 0; at < params.size(); at += kMaxContentBytes)
      input += record(Type::params, 1, params.substr(at, kMaxContentBytes));
    return input + record(Type::params, 1, "") + record(Type::stdin_stream, 1, "");
  };
  {
    RequestParser p;
    const std::string params = params_of(kMaxParamsBytes);
    REQUIRE(params.size() == kMaxParamsBytes);
    const Events e = drive(p, send(params));
    CHECK(e.steps == std::vector<Step>{Step::begin, Step::complete});
    CHECK(param(p, "N").size() == kMaxParamsBytes - 9);
  }
  {
    RequestParser p;
    const std::string params = params_of(kMaxParamsBytes + 1);
    const Events e = drive(p, send(params));
    CHECK(e.steps == std::vector<Step>{Step::begin, Step::error});
    CHECK(std::string(p.error()).find("kMaxParamsBytes") != std::string::npos);
  }
}

TEST_CASE("fcgi: the body keeps the limit, counts the rest, closes past kMaxDiscardBytes") {
  const std::size_t limit = 4097;
  {
    RequestParser p;
    const Events e = drive(p, request(1, kParams, std::string(limit, 'a')), 0, limit);
    REQUIRE(e.steps.back() == Step::complete);
    CHECK(p.body().size() == limit);
    CHECK_FALSE(p.discard_overflow());
  }
  // Exactly kMaxDiscardBytes dropped: kept in sync, the connection may stay.
  const auto big = [&](std::size_t total) {
    std::string input = begin(1) + record(Type::params, 1, kParams) + record(Type::params, 1, "");
    const std::string chunk(kMaxContentBytes, 'b');
    for (std::size_t sent = 0; sent < total;) {
      const std::size_t n = std::min(chunk.size(), total - sent);
      input += record(Type::stdin_stream, 1, chunk.substr(0, n), (8 - n % 8) % 8);
      sent += n;
    }
    return input + record(Type::stdin_stream, 1, "");
  };
  {
    RequestParser p;
    const std::string input = big(limit + kMaxDiscardBytes);
    const Events e = drive(p, input, 0, limit);
    REQUIRE(e.steps.back() == Step::complete);
    CHECK(e.consumed == input.size());
    CHECK(p.body().size() == limit);
    CHECK(p.body_bytes() == limit + kMaxDiscardBytes);
    CHECK_FALSE(p.discard_overflow());
  }
  {
    RequestParser p;
    const std::string input = big(limit + kMaxDiscardBytes + 1);
    const Events e = drive(p, input, 0, limit);
    REQUIRE(e.steps.back() == Step::complete);
    CHECK(e.consumed < input.size());  // stops reading: the connection is closed after the reply
    CHECK(p.body().size() == limit);
    CHECK(p.discard_overflow());
  }
}

TEST_CASE("fcgi: malformed input is a protocol error") {
  struct Row {
    const char* name;
    std::string input;
  };
  std::string bad_version = begin(1);
  bad_version[0] = 2;
  const std::vector<Row> rows = {
      {"version 2", bad_version},
      {"BEGIN_REQUEST of 7 bytes", record(Type::begin_request, 1, std::string(7, '\0'))},
      {"BEGIN_REQUEST of 9 bytes",
       record(Type::begin_request, 1, std::string("\0\1\1", 3) + std::string(6, '\0'))},
      {"BEGIN_REQUEST id 0", begin(0)},
      {"BEGIN_REQUEST twice", begin(1) + begin(1)},
      {"name length past the end", begin(1) +
                                       record(Type::params, 1,
                                              "\x05\x01"
                                              "AB") +
                                       record(Type::params, 1, "")},
      {"4-byte length cut short",
       begin(1) + record(Type::params, 1, "\x80\x00") + record(Type::params, 1, "")},
      {"4-byte length of 2^31-1", begin(1) +
                                      record(Type::params, 1,
                                             "\xFF\xFF\xFF\xFF\x01"
                                             "A") +
                                      record(Type::params, 1, "")},
      {"STDIN before the params end", begin(1) + record(Type::stdin_stream, 1, "x")},
      {"PARAMS after the params end",
       begin(1) + record(Type::params, 1, "") + record(Type::params, 1, kParams)},
  };
  for (const auto& row : rows) {
    INFO(row.name);
    for (const std::size_t chunk : {std::size_t{0}, std::size_t{1}}) {
      RequestParser p;
      const Events e = drive(p, row.input, chunk);
      REQUIRE_FALSE(e.steps.empty());
      CHECK(e.steps.back() == Step::error);
      CHECK(p.error() != nullptr);
    }
  }
}

TEST_CASE("fcgi: roles other than RESPONDER get FCGI_UNKNOWN_ROLE") {
  for (const int role : {2, 3, 0, 99}) {
    RequestParser p;
    const Events e = drive(p, begin(5, true, role));
    CHECK(e.steps.empty());
    CHECK_FALSE(p.active());
    const auto recs = parse_records(e.out);
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].type == 3);
    CHECK(recs[0].id == 5);
    CHECK(static_cast<int>(recs[0].content[4]) == 3);  // FCGI_UNKNOWN_ROLE
  }
}

TEST_CASE("fcgi: a second request id while one is active gets FCGI_CANT_MPX_CONN") {
  const std::string input = begin(1) + record(Type::params, 1, kParams) + begin(2) +
                            record(Type::params, 2, pair("X", "ignored")) +
                            record(Type::stdin_stream, 2, "ignored") + record(Type::params, 1, "") +
                            record(Type::stdin_stream, 1, "ok") + record(Type::stdin_stream, 1, "");
  RequestParser p;
  const Events e = drive(p, input, 1);
  REQUIRE(e.steps == std::vector<Step>{Step::begin, Step::complete});
  CHECK(p.request_id() == 1);
  CHECK(p.body() == "ok");
  CHECK(param(p, "X") == "<absent>");
  const auto recs = parse_records(e.out);
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].type == 3);
  CHECK(recs[0].id == 2);
  CHECK(static_cast<int>(recs[0].content[4]) == 1);  // FCGI_CANT_MPX_CONN
}

TEST_CASE("fcgi: ABORT_REQUEST drops the active request; other ids are ignored") {
  const std::string input = begin(1, false) + record(Type::params, 1, kParams) +
                            record(Type::abort_request, 9, "") + record(Type::abort_request, 1, "");
  RequestParser p;
  const Events e = drive(p, input, 1);
  REQUIRE(e.steps == std::vector<Step>{Step::begin, Step::aborted});
  CHECK_FALSE(p.active());
  CHECK_FALSE(p.keep_conn());
  CHECK(p.idle());
  const auto recs = parse_records(e.out);
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].type == 3);
  CHECK(recs[0].id == 1);
  // A new request may follow.
  const Events again = drive(p, request(4, kParams, "z"));
  CHECK(again.steps == std::vector<Step>{Step::begin, Step::complete});
  CHECK(p.body() == "z");
}

TEST_CASE("fcgi: GET_VALUES answers the three names it knows, once each") {
  const std::string asked = pair("FCGI_MAX_CONNS", "") + pair("FCGI_MAX_REQS", "") +
                            pair("FCGI_MPXS_CONNS", "") + pair("FCGI_OTHER", "") +
                            pair("FCGI_MPXS_CONNS", "");
  RequestParser p;
  const Events e = drive(p, record(Type::get_values, 0, asked, 3), 1);
  CHECK(e.steps.empty());
  CHECK(p.idle());
  const auto recs = parse_records(e.out);
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].type == 10);
  CHECK(recs[0].id == 0);
  const std::string max = std::to_string(kMaxConnsAnswer);
  CHECK(recs[0].content ==
        pair("FCGI_MAX_CONNS", max) + pair("FCGI_MAX_REQS", max) + pair("FCGI_MPXS_CONNS", "0"));
}

TEST_CASE("fcgi: unknown record types get FCGI_UNKNOWN_TYPE and are skipped") {
  for (const int type : {0, 3, 6, 7, 10, 11, 12, 255}) {
    INFO("type " << type);
    RequestParser p;
    const std::string input =
        record(static_cast<Type>(type), 0, "abc", 5) + request(1, kParams, "x");
    const Events e = drive(p, input, 1);
    CHECK(e.steps == std::vector<Step>{Step::begin, Step::complete});
    const auto recs = parse_records(e.out);
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].type == 11);
    CHECK(static_cast<unsigned char>(recs[0].content[0]) == type);
  }
}

TEST_CASE("fcgi: pipelined requests stop at each end; the rest is fed after next()") {
  const std::string input = request(1, kParams, "one") + request(1, kParams, "two");
  RequestParser p;
  std::string out;
  FeedResult r = p.feed(input, out);
  CHECK(r.step == Step::begin);
  p.set_body_limit(100);
  std::size_t used = r.consumed;
  r = p.feed(input.substr(used), out);
  CHECK(r.step == Step::complete);
  used += r.consumed;
  CHECK(used == input.size() / 2);
  CHECK(p.body() == "one");
  p.next();
  const Events e = drive(p, input.substr(used));
  CHECK(e.steps == std::vector<Step>{Step::begin, Step::complete});
  CHECK(p.body() == "two");
}

TEST_CASE("fcgi: the reply in STDOUT records, then STDERR, empty STDOUT, END_REQUEST") {
  HttpReply reply;
  reply.status = 429;
  reply.headers = {{"Retry-After", "60"}, {"Cache-Control", "no-store"}};
  reply.body = "{\"status\":5002}";
  reply.log_line = "a log line";
  std::string out;
  append_reply(out, 258, reply);
  const auto recs = parse_records(out);
  REQUIRE(recs.size() == 4);
  CHECK(recs[0].type == 6);
  CHECK(recs[0].id == 258);
  CHECK(recs[0].content ==
        "Status: 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        "Retry-After: 60\r\nCache-Control: no-store\r\nContent-Length: 15\r\n\r\n"
        "{\"status\":5002}");
  CHECK(recs[1].type == 7);
  CHECK(recs[1].content == "a log line\n");
  CHECK(recs[2].type == 6);
  CHECK(recs[2].content.empty());
  CHECK(recs[3].type == 3);
  CHECK(recs[3].content == std::string(8, '\0'));
}

TEST_CASE("fcgi: a reply over 65535 bytes is split into records") {
  HttpReply reply;
  reply.status = 200;
  reply.content_type = "text/plain";
  reply.body = std::string(200000, 'm');
  std::string out;
  append_reply(out, 1, reply);
  const auto recs = parse_records(out);
  std::string text;
  std::size_t stdout_records = 0;
  for (const auto& r : recs) {
    if (r.type == 6 && !r.content.empty()) {
      CHECK(r.content.size() <= kMaxContentBytes);
      text += r.content;
      ++stdout_records;
    }
  }
  CHECK(stdout_records == 4);
  CHECK(text.rfind("Status: 200 OK\r\nContent-Type: text/plain\r\n", 0) == 0);
  CHECK(text.size() - text.find("\r\n\r\n") - 4 == 200000);
  CHECK(recs.size() == stdout_records + 2);
  CHECK(recs.back().type == 3);
}

TEST_CASE("fcgi: reason phrases") {
  CHECK(reason_phrase(200) == "OK");
  CHECK(reason_phrase(413) == "Payload Too Large");
  CHECK(reason_phrase(504) == "Gateway Timeout");
  CHECK(reason_phrase(299) == "Unknown");
}

TEST_CASE("fcgi: fill_request takes the first of duplicates and DOCUMENT_URI before SCRIPT_NAME") {
  const std::string raw = pair("SCRIPT_NAME", "/script") + pair("REQUEST_METHOD", "POST") +
                          pair("REQUEST_METHOD", "GET") + pair("CONTENT_LENGTH", "42") +
                          pair("PVGATE_MERCHANT", "") + pair("REMOTE_ADDR", "::1") +
                          pair("PVGATE_REQUEST_ID", "rid") + pair("HTTP_ORIGIN", "o") +
                          pair("HTTP_REFERER", "r") + pair("CONTENT_TYPE", "text/plain");
  RequestParser p;
  REQUIRE(drive(p, request(1, raw, "")).steps.back() == Step::complete);
  HttpRequest r;
  r.method = "stale";
  fill_request(p.params(), r);
  CHECK(r.method == "POST");
  CHECK(r.path == "/script");
  CHECK(r.content_length == 42);
  CHECK(r.merchant_given);
  CHECK(r.merchant.empty());
  CHECK(r.remote_addr == "::1");
  CHECK(r.request_id == "rid");
  CHECK(r.origin == "o");
  CHECK(r.referer == "r");
  CHECK(r.content_type == "text/plain");
  CHECK(r.params.size() == 10);
  CHECK(r.param("REQUEST_METHOD") == std::optional<std::string_view>("POST"));

  const std::string with_uri =
      pair("DOCUMENT_URI", "/doc") + pair("SCRIPT_NAME", "/script") + pair("CONTENT_LENGTH", "+5");
  RequestParser q;
  REQUIRE(drive(q, request(1, with_uri, "")).steps.back() == Step::complete);
  fill_request(q.params(), r);
  CHECK(r.path == "/doc");
  CHECK(r.method.empty());
  CHECK(r.content_length == 0);  // not plain digits
  CHECK_FALSE(r.merchant_given);
  for (const char* bad : {"", "-1", " 5", "5 ", "0x10", "1234567890123456789"}) {
    RequestParser b;
    REQUIRE(drive(b, request(1, pair("CONTENT_LENGTH", bad), "")).steps.back() == Step::complete);
    fill_request(b.params(), r);
    CHECK(r.content_length == 0);
  }
}
