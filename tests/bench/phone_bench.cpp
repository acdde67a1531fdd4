// Cost of parse_phone(): nanoseconds per call over a mix of inputs, one thread, and the one-time
// cost of libphonenumber's first use (building its metadata). Never run by ctest.
//
// Reports this thread's CPU time per call (what a worker spends; stable on a shared, busy host)
// and the wall time (which also counts time the thread waited for a core).
//
//   pvgate_bench_phone [--calls N]     (default 200000)
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "phone.h"

using namespace pvgate;

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point start, long calls) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
         static_cast<double>(calls);
}

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

struct Mix {
  const char* name;
  std::vector<std::pair<std::string, std::string>> inputs;
};

// Runs `calls` parses cycling through `mix`; prints ns per call and how many were valid.
void run(const Mix& mix, long calls) {
  long valid = 0;
  const double cpu_start = thread_cpu_ns();
  const auto start = Clock::now();
  for (long i = 0; i < calls; ++i) {
    const auto& [code, number] = mix.inputs[static_cast<std::size_t>(i) % mix.inputs.size()];
    PhoneError why = PhoneError::none;
    if (parse_phone(code, number, why)) ++valid;
  }
  const double wall = ns_since(start, calls);
  const double cpu = (thread_cpu_ns() - cpu_start) / static_cast<double>(calls);
  std::printf("%-42s %7.0f ns/parse CPU, %7.0f wall  (%ld calls, %ld valid)\n", mix.name, cpu, wall,
              calls, valid);
}

}  // namespace

int main(int argc, char** argv) {
  long calls = 200'000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--calls") == 0 && i + 1 < argc) {
      calls = std::atol(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--calls N]\n", argv[0]);
      return 2;
    }
  }
  if (calls <= 0) calls = 1;

  // The first call pays for PhoneNumberUtil::GetInstance(): metadata and regular expressions.
  {
    const double cpu_start = thread_cpu_ns();
    const auto start = Clock::now();
    PhoneError why = PhoneError::none;
    const bool ok = parse_phone("60", "198765432", why).has_value();
    std::printf("%-42s %7.0f us CPU, %7.0f us wall (valid: %s)\n", "first call (library set-up)",
                (thread_cpu_ns() - cpu_start) / 1000, ns_since(start, 1) / 1000, ok ? "yes" : "no");
  }

  const Mix canonical{"canonical spellings, all valid",
                      {{"60", "198765432"},
                       {"65", "81234567"},
                       {"44", "7400123456"},
                       {"1", "2015550123"},
                       {"1", "8762101234"},
                       {"91", "8123456789"},
                       {"61", "412345678"},
                       {"49", "15123456789"}}};
  const Mix mixed{"mixed: odd spellings and refusals",
                  {{"60", "198765432"},
                   {"60", "0198765432"},
                   {"601", "98765432"},
                   {"0060", "198765432"},
                   {"60", "60198765432"},
                   {"44", "07400123456"},
                   {"44", "9098790000"},
                   {"1", "8002345678"},
                   {"60", "1234"},
                   {"60", "19876543"},
                   {"999", "123456789"},
                   {"60", "12a"},
                   {"60", std::string(40, '1')},
                   {"65", "81234567"},
                   {"91", "08123456789"},
                   {"1", "8762101234"}}};
  const Mix refused{"refused after every reading (worst case)",
                    {{"60", "6019876543"}, {"60", "19876543"}, {"44", "1212345"}}};
  run(canonical, calls);
  run(mixed, calls);
  run(refused, calls);
  return 0;
}
