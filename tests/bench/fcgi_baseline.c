/* The FastCGI ceiling for scripts/bench: the least a libfcgi responder can do
 * per request, behind the same nginx config and socket as pvgate.
 *
 * N threads each loop on FCGX_Accept_r (libfcgi's threaded pattern, no
 * application lock): read the params pvgate reads, read the whole body, answer
 * a fixed small JSON. No parsing, no logging, no allocation per request.
 *
 *   fcgi_baseline [--threads N] [--socket PATH] [--config IGNORED]
 *
 * Without --socket it serves the listening socket on fd 0 (spawn-fcgi), as
 * pvgate does under scripts/bench. --config is accepted and ignored (so it can
 * take pvgate's command line). It prints "fcgi_baseline serving with N
 * threads" when ready, the line scripts/bench waits for.
 *
 * A kept connection (fastcgi_keep_conn on) pins its thread until nginx sends
 * the next request or closes it, so the thread count must be at least the
 * number of FastCGI connections nginx opens (at most the concurrent requests:
 * wrk -c). scripts/bench runs it with pvgate's thread count, >= wrk -c.
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int listen_fd = 0;

/* About the size of pvgate's own answers (head and body). */
#define BODY "{\"message\":\"Baseline.\",\"status\":200}"
static char reply[256];
static int reply_len;

static void *serve(void *arg) {
  (void)arg;
  FCGX_Request r;
  char body[4097];
  if (FCGX_InitRequest(&r, listen_fd, 0) != 0) return NULL;
  while (FCGX_Accept_r(&r) >= 0) {
    /* The params pvgate looks at, so both pay the same lookups. */
    const char *names[] = {"REQUEST_METHOD", "DOCUMENT_URI", "CONTENT_TYPE", "CONTENT_LENGTH",
                           "PVGATE_MERCHANT", "REMOTE_ADDR", "PVGATE_REQUEST_ID", NULL};
    size_t seen = 0;
    for (const char **n = names; *n; ++n) {
      const char *v = FCGX_GetParam(*n, r.envp);
      if (v) seen += strlen(v);
    }
    (void)seen;
    while (FCGX_GetStr(body, sizeof body, r.in) > 0) {
    }
    FCGX_PutStr(reply, reply_len, r.out);
    FCGX_Finish_r(&r);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 16;
  const char *socket_path = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      ++i;
    } else {
      fprintf(stderr, "usage: %s [--threads N] [--socket PATH] [--config IGNORED]\n", argv[0]);
      return 2;
    }
  }
  if (threads < 1) threads = 1;
  reply_len = snprintf(reply, sizeof reply,
                       "Status: 200 OK\r\nContent-Type: application/json\r\n"
                       "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n%s",
                       sizeof BODY - 1, BODY);
  signal(SIGPIPE, SIG_IGN);
  if (FCGX_Init() != 0) return 1;
  /* libfcgi catches SIGTERM to end its accept loop "gracefully", which threads blocked in
   * accept() or on a kept connection never notice: let SIGTERM end the process. */
  signal(SIGTERM, SIG_DFL);
  if (socket_path) {
    unlink(socket_path);
    listen_fd = FCGX_OpenSocket(socket_path, 1024);
    if (listen_fd < 0) {
      perror("FCGX_OpenSocket");
      return 1;
    }
    chmod(socket_path, 0660); /* as spawn-fcgi -M 0660: nginx runs as this user or root */
  }
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  if (!t) return 1;
  for (int i = 0; i < threads; ++i) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (pthread_create(&t[i], &attr, serve, NULL) != 0) {
      perror("pthread_create");
      return 1;
    }
    pthread_attr_destroy(&attr);
  }
  fprintf(stderr, "fcgi_baseline serving with %d threads\n", threads);
  for (int i = 0; i < threads; ++i) pthread_join(t[i], NULL);
  return 0;
}
