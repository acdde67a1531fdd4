#include "fcgi_protocol.h"

#include <fastcgi.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace pvgate::fcgi {

static_assert(kHeaderBytes == FCGI_HEADER_LEN);
static_assert(kMaxContentBytes == FCGI_MAX_LENGTH);
static_assert(static_cast<int>(Type::begin_request) == FCGI_BEGIN_REQUEST);
static_assert(static_cast<int>(Type::abort_request) == FCGI_ABORT_REQUEST);
static_assert(static_cast<int>(Type::end_request) == FCGI_END_REQUEST);
static_assert(static_cast<int>(Type::params) == FCGI_PARAMS);
static_assert(static_cast<int>(Type::stdin_stream) == FCGI_STDIN);
static_assert(static_cast<int>(Type::stdout_stream) == FCGI_STDOUT);
static_assert(static_cast<int>(Type::stderr_stream) == FCGI_STDERR);
static_assert(static_cast<int>(Type::data) == FCGI_DATA);
static_assert(static_cast<int>(Type::get_values) == FCGI_GET_VALUES);
static_assert(static_cast<int>(Type::get_values_result) == FCGI_GET_VALUES_RESULT);
static_assert(static_cast<int>(Type::unknown_type) == FCGI_UNKNOWN_TYPE);
static_assert(static_cast<int>(EndStatus::request_complete) == FCGI_REQUEST_COMPLETE);
static_assert(static_cast<int>(EndStatus::cant_mpx_conn) == FCGI_CANT_MPX_CONN);
static_assert(static_cast<int>(EndStatus::overloaded) == FCGI_OVERLOADED);
static_assert(static_cast<int>(EndStatus::unknown_role) == FCGI_UNKNOWN_ROLE);

namespace {

std::size_t padding_for(std::size_t content) {
  return (8 - content % 8) % 8;
}

void put_header(char* at, Type type, std::uint16_t id, std::size_t content) {
  const auto u8 = [](unsigned v) { return static_cast<char>(static_cast<unsigned char>(v)); };
  at[0] = u8(FCGI_VERSION_1);
  at[1] = u8(static_cast<unsigned>(type));
  at[2] = u8(id >> 8);
  at[3] = u8(id & 0xFF);
  at[4] = u8(static_cast<unsigned>(content >> 8));
  at[5] = u8(static_cast<unsigned>(content & 0xFF));
  at[6] = u8(static_cast<unsigned>(padding_for(content)));
  at[7] = 0;
}

// Reads one name-value length (1 byte, or 4 with the high bit set).
bool read_length(std::string_view raw, std::size_t& at, std::size_t& length) {
  if (at >= raw.size()) return false;
  const auto b0 = static_cast<unsigned char>(raw[at]);
  if ((b0 & 0x80) == 0) {
    length = b0;
    at += 1;
    return true;
  }
  if (raw.size() - at < 4) return false;
  const auto b = [&](std::size_t i) {
    return static_cast<std::size_t>(static_cast<unsigned char>(raw[at + i]));
  };
  length = ((b(0) & 0x7F) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
  at += 4;
  return true;
}

// Name-value pairs (FastCGI 1.0, 3.4); false when a length runs past the end.
bool decode_pairs(std::string_view raw, std::vector<Param>& out) {
  std::size_t at = 0;
  while (at < raw.size()) {
    std::size_t name_len = 0;
    std::size_t value_len = 0;
    if (!read_length(raw, at, name_len) || !read_length(raw, at, value_len)) return false;
    if (name_len > raw.size() - at || value_len > raw.size() - at - name_len) return false;
    out.emplace_back(raw.substr(at, name_len), raw.substr(at + name_len, value_len));
    at += name_len + value_len;
  }
  return true;
}

void append_pair(std::string& out, std::string_view name, std::string_view value) {
  // Only short names and values are ever written here (GET_VALUES_RESULT).
  out.push_back(static_cast<char>(name.size()));
  out.push_back(static_cast<char>(value.size()));
  out.append(name);
  out.append(value);
}

// A record whose content is appended in place after begin_record(): the
// header is filled in by end_record, which splits the content into several
// records should it be longer than one may be.
std::size_t begin_record(std::string& out) {
  const std::size_t start = out.size();
  out.append(kHeaderBytes, '\0');
  return start;
}

void end_record(std::string& out, std::size_t start, Type type, std::uint16_t id) {
  const std::size_t length = out.size() - start - kHeaderBytes;
  if (length <= kMaxContentBytes) {
    put_header(&out[start], type, id, length);
    out.append(padding_for(length), '\0');
    return;
  }
  const std::string content = out.substr(start + kHeaderBytes);  // rare: a large /metrics
  out.resize(start);
  append_stream(out, type, id, content);
}

void append_number(std::string& out, std::size_t value) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, r.ptr);
}

}  // namespace

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

FeedResult RequestParser::feed(const char* data, std::size_t size, std::string& out) {
  if (stream_ == Stream::done) return {Step::complete, 0};  // until next()
  std::size_t used = 0;
  while (true) {
    if (phase_ == Phase::header) {
      if (used == size) return {Step::more, used};
      const std::size_t take = std::min(kHeaderBytes - header_got_, size - used);
      std::memcpy(header_ + header_got_, data + used, take);
      header_got_ += take;
      used += take;
      if (header_got_ < kHeaderBytes) return {Step::more, used};
      header_got_ = 0;
      if (start_record(out) == Step::error) return {Step::error, used};
      phase_ = Phase::content;
    }
    if (phase_ == Phase::content) {
      if (content_left_ > 0) {
        if (used == size) return {Step::more, used};
        const std::size_t take = std::min(content_left_, size - used);
        const char* at = data + used;
        used += take;
        content_left_ -= take;
        switch (handling_) {
          case Handling::collect:
            record_.append(at, take);
            break;
          case Handling::params:
            params_raw_.append(at, take);
            break;
          case Handling::stdin_stream: {
            body_bytes_ += take;
            const std::size_t room = body_limit_ > body_.size() ? body_limit_ - body_.size() : 0;
            body_.append(at, std::min(room, take));
            if (body_bytes_ - body_.size() > kMaxDiscardBytes) {
              // Answer what we have; the server closes instead of reading on.
              discard_overflow_ = true;
              stream_ = Stream::done;
              return {Step::complete, used};
            }
            break;
          }
          case Handling::skip:
            break;
        }
        if (content_left_ > 0) return {Step::more, used};
      }
      if (finish_content(out) == Step::error) return {Step::error, used};
      phase_ = Phase::padding;
    }
    // Phase::padding
    if (padding_left_ > 0) {
      if (used == size) return {Step::more, used};
      const std::size_t take = std::min(padding_left_, size - used);
      used += take;
      padding_left_ -= take;
      if (padding_left_ > 0) return {Step::more, used};
    }
    phase_ = Phase::header;
    if (pending_ != Step::more) {
      const Step event = pending_;
      pending_ = Step::more;
      if (event == Step::complete) stream_ = Stream::done;
      return {event, used};
    }
  }
}

Step RequestParser::fail(const char* why) {
  error_ = why;
  return Step::error;
}

Step RequestParser::start_record(std::string& out) {
  if (header_[0] != FCGI_VERSION_1) return fail("FastCGI version is not 1");
  type_ = header_[1];
  id_ = static_cast<std::uint16_t>((header_[2] << 8) | header_[3]);
  content_left_ = static_cast<std::size_t>((header_[4] << 8) | header_[5]);
  padding_left_ = header_[6];
  record_length_ = content_left_;
  record_.clear();
  const bool mine = active_ && id_ == request_id_;
  handling_ = Handling::skip;
  switch (type_) {
    case FCGI_BEGIN_REQUEST:
      if (id_ == FCGI_NULL_REQUEST_ID) return fail("BEGIN_REQUEST with request id 0");
      if (mine) return fail("BEGIN_REQUEST for the request already active");
      if (content_left_ != 8) return fail("BEGIN_REQUEST body is not 8 bytes");
      handling_ = Handling::collect;
      break;
    case FCGI_ABORT_REQUEST:
    case FCGI_DATA:  // FILTER role only; a responder ignores it
      break;
    case FCGI_PARAMS:
      if (!mine) break;  // records of other requests are ignored
      if (stream_ != Stream::params) return fail("PARAMS after the end of the params");
      if (content_left_ > kMaxParamsBytes - params_raw_.size())
        return fail("params larger than kMaxParamsBytes");
      handling_ = Handling::params;
      break;
    case FCGI_STDIN:
      if (!mine) break;
      if (stream_ != Stream::stdin_stream) return fail("STDIN before the end of the params");
      handling_ = Handling::stdin_stream;
      break;
    case FCGI_GET_VALUES:
      if (id_ == FCGI_NULL_REQUEST_ID) handling_ = Handling::collect;
      break;
    default: {
      // A type we do not know (or one only an application sends).
      const char content[8] = {static_cast<char>(type_), 0, 0, 0, 0, 0, 0, 0};
      append_record(out, Type::unknown_type, FCGI_NULL_REQUEST_ID, {content, sizeof content});
      break;
    }
  }
  return Step::more;
}

Step RequestParser::finish_content(std::string& out) {
  const bool mine = active_ && id_ == request_id_;
  switch (handling_) {
    case Handling::collect:
      if (type_ == FCGI_GET_VALUES) {
        answer_get_values(out);
        break;
      }
      // BEGIN_REQUEST: role (2 bytes), flags, 5 reserved.
      if (active_) {
        append_end_request(out, id_, EndStatus::cant_mpx_conn);
        break;
      }
      if (((static_cast<unsigned char>(record_[0]) << 8) |
           static_cast<unsigned char>(record_[1])) != FCGI_RESPONDER) {
        append_end_request(out, id_, EndStatus::unknown_role);
        break;
      }
      active_ = true;
      request_id_ = id_;
      keep_conn_ = (static_cast<unsigned char>(record_[2]) & FCGI_KEEP_CONN) != 0;
      stream_ = Stream::params;
      params_raw_.clear();
      params_.clear();
      body_.clear();
      body_limit_ = 0;
      body_bytes_ = 0;
      discard_overflow_ = false;
      pending_ = Step::begin;
      break;
    case Handling::params:
      if (record_length_ == 0) {  // the empty record ends the params
        if (!decode_params()) return fail("malformed name-value pair in the params");
        stream_ = Stream::stdin_stream;
      }
      break;
    case Handling::stdin_stream:
      if (record_length_ == 0) pending_ = Step::complete;
      break;
    case Handling::skip:
      if (type_ == FCGI_ABORT_REQUEST && mine) {
        append_end_request(out, id_, EndStatus::request_complete);
        active_ = false;
        stream_ = Stream::none;
        pending_ = Step::aborted;
      }
      break;
  }
  return Step::more;
}

bool RequestParser::decode_params() {
  params_.clear();
  return decode_pairs(params_raw_, params_);
}

void RequestParser::answer_get_values(std::string& out) {
  std::vector<Param> asked;
  decode_pairs(record_, asked);  // a malformed tail is ignored: answer what was readable
  bool conns = false;
  bool reqs = false;
  bool mpxs = false;
  const std::size_t start = begin_record(out);
  char number[16];
  const auto r = std::to_chars(number, number + sizeof number, kMaxConnsAnswer);
  const std::string_view max(number, static_cast<std::size_t>(r.ptr - number));
  for (const auto& [name, value] : asked) {
    if (name == FCGI_MAX_CONNS && !conns) {
      conns = true;
      append_pair(out, name, max);
    } else if (name == FCGI_MAX_REQS && !reqs) {
      reqs = true;
      append_pair(out, name, max);
    } else if (name == FCGI_MPXS_CONNS && !mpxs) {
      mpxs = true;
      append_pair(out, name, "0");
    }
  }
  end_record(out, start, Type::get_values_result, FCGI_NULL_REQUEST_ID);
}

void RequestParser::next() {
  active_ = false;
  stream_ = Stream::none;
}

void append_record(std::string& out, Type type, std::uint16_t id, std::string_view content) {
  const std::size_t start = out.size();
  out.resize(start + kHeaderBytes);
  put_header(&out[start], type, id, content.size());
  out.append(content);
  out.append(padding_for(content.size()), '\0');
}

void append_stream(std::string& out, Type type, std::uint16_t id, std::string_view data) {
  while (!data.empty()) {
    const std::size_t n = std::min(data.size(), kMaxContentBytes);
    append_record(out, type, id, data.substr(0, n));
    data.remove_prefix(n);
  }
}

void append_end_request(std::string& out, std::uint16_t id, EndStatus status,
                        std::uint32_t app_status) {
  const char body[8] = {static_cast<char>(app_status >> 24),
                        static_cast<char>((app_status >> 16) & 0xFF),
                        static_cast<char>((app_status >> 8) & 0xFF),
                        static_cast<char>(app_status & 0xFF),
                        static_cast<char>(status),
                        0,
                        0,
                        0};
  append_record(out, Type::end_request, id, {body, sizeof body});
}

void append_reply(std::string& out, std::uint16_t id, const HttpReply& reply) {
  std::size_t start = begin_record(out);
  out += "Status: ";
  append_number(out, static_cast<std::size_t>(reply.status < 0 ? 500 : reply.status));
  out += ' ';
  out += reason_phrase(reply.status);
  out += "\r\nContent-Type: ";
  out += reply.content_type;
  out += "\r\n";
  for (const auto& [name, value] : reply.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "Content-Length: ";
  append_number(out, reply.body.size());
  out += "\r\n\r\n";
  out += reply.body;
  end_record(out, start, Type::stdout_stream, id);
  if (!reply.log_line.empty()) {
    // nginx writes FastCGI stderr to its error log, one entry per record.
    start = begin_record(out);
    out += reply.log_line;
    out += '\n';
    end_record(out, start, Type::stderr_stream, id);
  }
  append_record(out, Type::stdout_stream, id, {});
  append_end_request(out, id, EndStatus::request_complete);
}

void fill_request(const std::vector<Param>& params, HttpRequest& request) {
  enum : unsigned {
    kMethod = 1u << 0,
    kDocumentUri = 1u << 1,
    kScriptName = 1u << 2,
    kContentType = 1u << 3,
    kContentLength = 1u << 4,
    kMerchant = 1u << 5,
    kRemoteAddr = 1u << 6,
    kRequestId = 1u << 7,
    kOrigin = 1u << 8,
    kReferer = 1u << 9,
  };
  unsigned seen = 0;
  std::string_view script_name;
  std::string_view content_length;
  request.params.assign(params.begin(), params.end());
  for (std::string* field :
       {&request.method, &request.path, &request.content_type, &request.merchant,
        &request.remote_addr, &request.request_id, &request.origin, &request.referer})
    field->clear();
  for (const auto& [name, value] : params) {
    const auto first = [&](unsigned bit) {
      const bool is_first = (seen & bit) == 0;
      seen |= bit;
      return is_first;
    };
    if (name == "REQUEST_METHOD") {
      if (first(kMethod)) request.method.assign(value);
    } else if (name == "DOCUMENT_URI") {
      if (first(kDocumentUri)) request.path.assign(value);
    } else if (name == "SCRIPT_NAME") {
      if (first(kScriptName)) script_name = value;
    } else if (name == "CONTENT_TYPE") {
      if (first(kContentType)) request.content_type.assign(value);
    } else if (name == "CONTENT_LENGTH") {
      if (first(kContentLength)) content_length = value;
    } else if (name == "PVGATE_MERCHANT") {
      if (first(kMerchant)) request.merchant.assign(value);
    } else if (name == "REMOTE_ADDR") {
      if (first(kRemoteAddr)) request.remote_addr.assign(value);
    } else if (name == "PVGATE_REQUEST_ID") {
      if (first(kRequestId)) request.request_id.assign(value);
    } else if (name == "HTTP_ORIGIN") {
      if (first(kOrigin)) request.origin.assign(value);
    } else if (name == "HTTP_REFERER") {
      if (first(kReferer)) request.referer.assign(value);
    }
  }
  if (request.path.empty()) request.path.assign(script_name);
  request.merchant_given = (seen & kMerchant) != 0;
  request.content_length = 0;
  if (!content_length.empty() && content_length.size() <= 18) {
    std::size_t n = 0;
    const auto r =
        std::from_chars(content_length.data(), content_length.data() + content_length.size(), n);
    if (r.ec == std::errc{} && r.ptr == content_length.data() + content_length.size())
      request.content_length = n;
  }
}

}  // namespace pvgate::fcgi
