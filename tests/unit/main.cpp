#define CATCH_CONFIG_RUNNER
#include <signal.h>

#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  // As pvgate's main does (block_signals()): a peer that closed a socket must
  // not kill the process. The Redis store refuses to start without it.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, nullptr);
  return Catch::Session().run(argc, argv);
}
