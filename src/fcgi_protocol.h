// FastCGI's wire format, without I/O: a parser that takes whatever bytes a
// non-blocking read returned (one byte or many records at a time) and tells
// the server when a request has begun and when it is whole, and the writer of
// the reply records. Pure, so the tests and the fuzz target drive it with no
// socket. libfcgi's <fastcgi.h> supplies the constants (in the .cpp only).
//
// What a connection may carry (FastCGI 1.0): one request at a time (we
// answer GET_VALUES with FCGI_MPXS_CONNS=0, and a second BEGIN_REQUEST while
// one is active gets END_REQUEST FCGI_CANT_MPX_CONN). A request is
// BEGIN_REQUEST (RESPONDER; other roles get FCGI_UNKNOWN_ROLE), PARAMS
// records up to an empty one, then STDIN records up to an empty one. Records
// of other request ids are ignored, unknown types answered FCGI_UNKNOWN_TYPE.
// Every limit below is a named constant; breaking one is a protocol error
// after which the server closes the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http.h"

namespace pvgate::fcgi {

inline constexpr std::size_t kHeaderBytes = 8;
// A record's content length field is 16 bits.
inline constexpr std::size_t kMaxContentBytes = 65535;
// A request's PARAMS content, all records together. nginx sends a few KiB
// (headers travel as HTTP_* params); more is a protocol error.
inline constexpr std::size_t kMaxParamsBytes = 64 * 1024;
// Body bytes past the kept ones are read and dropped so a kept-alive
// connection stays in sync; past this many the request is answered as it
// stands and the connection closed instead (discard_overflow()).
inline constexpr std::size_t kMaxDiscardBytes = 1024 * 1024;
// What GET_VALUES answers for FCGI_MAX_CONNS and FCGI_MAX_REQS (one request
// per connection, so the same number): the server's connection limit.
inline constexpr unsigned kMaxConnsAnswer = 1u << 20;

// Record types (the values of <fastcgi.h>, checked in the .cpp).
enum class Type : std::uint8_t {
  begin_request = 1,
  abort_request = 2,
  end_request = 3,
  params = 4,
  stdin_stream = 5,
  stdout_stream = 6,
  stderr_stream = 7,
  data = 8,
  get_values = 9,
  get_values_result = 10,
  unknown_type = 11,
};

// END_REQUEST's protocolStatus.
enum class EndStatus : std::uint8_t {
  request_complete = 0,
  cant_mpx_conn = 1,
  overloaded = 2,
  unknown_role = 3,
};

using Param = std::pair<std::string_view, std::string_view>;

enum class Step {
  more,      // every byte given was consumed: read more
  begin,     // a request began: set_body_limit() now, then feed on
  complete,  // the request is whole: serve it; feed nothing more until next()
  aborted,   // ABORT_REQUEST for the active request: dropped (END_REQUEST is in `out`)
  error,     // a protocol violation (error() names it): close the connection
};

struct FeedResult {
  Step step = Step::more;
  std::size_t consumed = 0;  // bytes of the input used; feed the rest again
};

class RequestParser {
 public:
  // Consumes bytes up to the first event. Replies the protocol requires
  // (GET_VALUES_RESULT, UNKNOWN_TYPE, END_REQUEST for a refused request or
  // an abort) are appended to `out`, to be written before anything else.
  FeedResult feed(const char* data, std::size_t size, std::string& out);
  FeedResult feed(std::string_view data, std::string& out) {
    return feed(data.data(), data.size(), out);
  }

  // Body bytes to keep (the server passes max_body_bytes + 1, so "over the
  // limit" can be told); the rest of the body is counted and dropped.
  void set_body_limit(std::size_t bytes) { body_limit_ = bytes; }

  // After `complete` and the reply: ready for the next request. Buffers keep
  // their capacity; params() and body() are invalid from the next begin on.
  void next();

  // No byte of a record and no request pending: between requests.
  bool idle() const { return !active_ && header_got_ == 0 && phase_ == Phase::header; }
  bool active() const { return active_; }
  std::uint16_t request_id() const { return request_id_; }
  bool keep_conn() const { return keep_conn_; }
  // More than kMaxDiscardBytes of body were dropped: answer, then close.
  bool discard_overflow() const { return discard_overflow_; }
  // Once `complete`: every param in order (views into this parser's buffer).
  const std::vector<Param>& params() const { return params_; }
  std::string& body() { return body_; }
  // STDIN content bytes received for this request, kept or dropped.
  std::uint64_t body_bytes() const { return body_bytes_; }
  const char* error() const { return error_; }

 private:
  enum class Phase { header, content, padding };
  enum class Stream { none, params, stdin_stream, done };
  enum class Handling { collect, params, stdin_stream, skip };

  Step start_record(std::string& out);    // after the 8 header bytes
  Step finish_content(std::string& out);  // after the content (collected records act here)
  Step fail(const char* why);
  bool decode_params();
  void answer_get_values(std::string& out);

  unsigned char header_[kHeaderBytes] = {};
  std::size_t header_got_ = 0;
  Phase phase_ = Phase::header;
  Handling handling_ = Handling::skip;
  std::uint8_t type_ = 0;
  std::uint16_t id_ = 0;
  std::size_t record_length_ = 0;  // the current record's content length
  std::size_t content_left_ = 0;
  std::size_t padding_left_ = 0;
  std::string record_;         // content of a collected record (BEGIN_REQUEST, GET_VALUES)
  Step pending_ = Step::more;  // an event to report once the record's padding is read

  bool active_ = false;
  std::uint16_t request_id_ = 0;
  bool keep_conn_ = false;
  Stream stream_ = Stream::none;
  std::string params_raw_;
  std::vector<Param> params_;
  std::string body_;
  std::size_t body_limit_ = 0;
  std::uint64_t body_bytes_ = 0;
  bool discard_overflow_ = false;
  const char* error_ = nullptr;
};

// The reason phrase of a status pvgate answers with ("Unknown" for others).
std::string_view reason_phrase(int status);

// Appends one record (content at most kMaxContentBytes; padded to 8).
void append_record(std::string& out, Type type, std::uint16_t id, std::string_view content);
// Appends `data` as records of `type` of at most kMaxContentBytes each (none
// for empty data: the empty record that ends a stream is the caller's).
void append_stream(std::string& out, Type type, std::uint16_t id, std::string_view data);
void append_end_request(std::string& out, std::uint16_t id, EndStatus status,
                        std::uint32_t app_status = 0);
// The whole reply in one buffer: CGI headers and body in STDOUT records,
// reply.log_line + '\n' in a STDERR record when there is one, the empty
// STDOUT record, END_REQUEST (request complete).
void append_reply(std::string& out, std::uint16_t id, const HttpReply& reply);

// Fills the request fields the handler reads from `params` (the first of
// duplicate names wins; path from DOCUMENT_URI, else SCRIPT_NAME) and
// request.params with all of them. Leaves the body alone.
void fill_request(const std::vector<Param>& params, HttpRequest& request);

}  // namespace pvgate::fcgi
