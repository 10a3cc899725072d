// Batched UDP for cyfs-ns (src/net/ns/udp-batch.ts loads it; server.ts falls back to node:dgram without it).
//
// Node's dgram costs a receive buffer, an rinfo object and a C++-to-JavaScript call per datagram, and a send request
// per answer: about half of cyfs-ns's time when it answers from memory. Here one readiness event drains the socket
// with recvmmsg, hands JavaScript the whole batch in one call (the packets in one Buffer, their lengths and peers
// in a shared table), and sends the answers it wrote into a shared arena back with one sendmmsg.
//
// Linux only (recvmmsg, sendmmsg), and only on the main thread: the poll handle lives on the main event loop.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// Datagrams per recvmmsg, and the most a JavaScript call is handed.
#define BATCH 64
// Larger datagrams are cut (MSG_TRUNC) and reported with length -1: no DNS query over UDP comes near this.
#define SLOT 4096
// Each datagram is received into a head in one small region and the rest, rarely reached, into a tail elsewhere:
// only the heads' pages are ever touched (32 KB rather than a page per datagram, 256 KB).
#define HEAD 512
// Per packet in the shared table: offset and length in the batch's Buffer, then the peer's sockaddr (28 bytes).
#define META_WORDS 10
// Per answer: the packet it answers, its offset and its length in the arena.
#define ANSWER_WORDS 3
// Answers that do not fit are sent one by one with sendTo.
#define ARENA_BYTES 65536
// Batches per readiness event before the loop gets a turn for the other sockets (TCP, upstream answers, timers).
#define MAX_ROUNDS 16

#define META_BYTES (BATCH * META_WORDS * 4)
#define ANSWERS_BYTES (BATCH * ANSWER_WORDS * 4)
#define SHARED_BYTES (META_BYTES + ANSWERS_BYTES + ARENA_BYTES)

typedef struct {
  napi_env env;
  int fd;
  // Closing or closed: nothing more is received or sent.
  int closing;
  // The poll handle is open (until its close callback).
  int polling;
  // JavaScript holds the handle (until its finalizer).
  int referenced;
  uv_poll_t poll;
  napi_ref callback;
  napi_ref shared_ref;
  napi_async_context async;
  uint8_t *shared;
  uint8_t *heads;
  uint8_t *tails;
  struct sockaddr_in6 peers[BATCH];
  struct iovec iov[BATCH][2];
  struct mmsghdr msgs[BATCH];
  struct iovec send_iov[BATCH];
  struct mmsghdr sends[BATCH];
} Listener;

#define CHECK(call)                                                                                                     \
  do {                                                                                                                  \
    if ((call) != napi_ok) return NULL;                                                                                 \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  const char *code = err == EADDRINUSE ? "EADDRINUSE" : err == EACCES ? "EACCES" : err == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : NULL;
  napi_throw_error(env, code, msg);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return 0;
  }
  return 1;
}

static Listener *listener_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a udp-batch listener");
    return NULL;
  }
  return (Listener *)p;
}

static socklen_t addr_len(const struct sockaddr_in6 *sa) {
  return sa->sin6_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

// bind(address, port): a non-blocking UDP socket bound there (IPv6 sockets take IPv6 only, as dgram's udp6 with
// ipv6Only); returns its descriptor.
static napi_value Bind(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char address[INET6_ADDRSTRLEN];
  size_t len;
  int32_t port;
  CHECK(napi_get_value_string_utf8(env, argv[0], address, sizeof address, &len));
  CHECK(napi_get_value_int32(env, argv[1], &port));
  struct sockaddr_in6 sa;
  memset(&sa, 0, sizeof sa);
  struct sockaddr_in *sa4 = (struct sockaddr_in *)&sa;
  int family;
  if (inet_pton(AF_INET, address, &sa4->sin_addr) == 1) {
    family = AF_INET;
    sa4->sin_family = AF_INET;
    sa4->sin_port = htons((uint16_t)port);
  } else if (inet_pton(AF_INET6, address, &sa.sin6_addr) == 1) {
    family = AF_INET6;
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons((uint16_t)port);
  } else {
    napi_throw_type_error(env, NULL, "not an IP address");
    return NULL;
  }
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int one = 1;
  if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "setsockopt");
  }
  if (bind(fd, (struct sockaddr *)&sa, addr_len(&sa)) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind");
  }
  napi_value out;
  CHECK(napi_create_int32(env, fd, &out));
  return out;
}

// port(fd): the port a socket is bound to.
static napi_value Port(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  struct sockaddr_in6 sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) return throw_errno(env, errno, "getsockname");
  napi_value out;
  CHECK(napi_create_int32(env, ntohs(sa.sin6_port), &out));
  return out;
}

static void send_answers(Listener *l, int received, int32_t count) {
  const int32_t *answers = (const int32_t *)(l->shared + META_BYTES);
  uint8_t *arena = l->shared + META_BYTES + ANSWERS_BYTES;
  int k = 0;
  if (count > received) count = received;
  for (int j = 0; j < count; j++) {
    int32_t idx = answers[j * ANSWER_WORDS], off = answers[j * ANSWER_WORDS + 1], len = answers[j * ANSWER_WORDS + 2];
    if (idx < 0 || idx >= received || off < 0 || len < 0 || off > ARENA_BYTES || len > ARENA_BYTES - off) continue;
    l->send_iov[k].iov_base = arena + off;
    l->send_iov[k].iov_len = (size_t)len;
    memset(&l->sends[k].msg_hdr, 0, sizeof l->sends[k].msg_hdr);
    l->sends[k].msg_hdr.msg_name = &l->peers[idx];
    l->sends[k].msg_hdr.msg_namelen = addr_len(&l->peers[idx]);
    l->sends[k].msg_hdr.msg_iov = &l->send_iov[k];
    l->sends[k].msg_hdr.msg_iovlen = 1;
    k++;
  }
  for (int done = 0; done < k;) {
    int r = sendmmsg(l->fd, l->sends + done, (unsigned)(k - done), MSG_DONTWAIT);
    if (r > 0) done += r;
    // An answer the kernel will not take now (a full send buffer, an unreachable peer) is lost, as a datagram may be.
    else if (r < 0 && errno != EINTR) done++;
  }
}

// Hands one received batch to JavaScript and sends what it answered at once.
static void call_js(Listener *l, int n) {
  napi_env env = l->env;
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    if (!(l->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) total += l->msgs[i].msg_len;
  }
  void *data;
  napi_value argv[2], fn, recv, result;
  if (napi_create_buffer(env, total, &data, &argv[0]) != napi_ok || napi_create_int32(env, n, &argv[1]) != napi_ok ||
      napi_get_reference_value(env, l->callback, &fn) != napi_ok || napi_get_global(env, &recv) != napi_ok)
    return;
  int32_t *meta = (int32_t *)l->shared;
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    int32_t *m = meta + i * META_WORDS;
    memset(m, 0, META_WORDS * 4);
    if (l->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
      m[1] = -1;
    } else {
      unsigned len = l->msgs[i].msg_len;
      unsigned head = len < HEAD ? len : HEAD;
      memcpy((uint8_t *)data + off, l->heads + (size_t)i * HEAD, head);
      memcpy((uint8_t *)data + off + head, l->tails + (size_t)i * (SLOT - HEAD), len - head);
      m[0] = (int32_t)off;
      m[1] = (int32_t)len;
      off += len;
    }
    socklen_t alen = l->msgs[i].msg_hdr.msg_namelen;
    memcpy(m + 2, &l->peers[i], alen < sizeof l->peers[i] ? alen : sizeof l->peers[i]);
  }
  // make_callback, not call_function: the outermost call must also run the microtasks and process.nextTick queue.
  if (napi_make_callback(env, l->async, recv, fn, 2, argv, &result) == napi_ok) {
    int32_t count = 0;
    if (!l->closing && napi_get_value_int32(env, result, &count) == napi_ok && count > 0) send_answers(l, n, count);
    return;
  }
  bool pending = false;
  napi_value err;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &err) == napi_ok)
    napi_fatal_exception(env, err);
}

static void deliver(Listener *l, int n) {
  napi_handle_scope scope;
  if (napi_open_handle_scope(l->env, &scope) != napi_ok) return;
  call_js(l, n);
  napi_close_handle_scope(l->env, scope);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  Listener *l = (Listener *)h->data;
  if (status < 0) return;
  for (int round = 0; round < MAX_ROUNDS && !l->closing; round++) {
    for (int i = 0; i < BATCH; i++) {
      l->msgs[i].msg_hdr.msg_namelen = sizeof l->peers[i];
      l->msgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(l->fd, l->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    deliver(l, n);
    // A short batch means the queue was empty a moment ago: wait for the next event rather than ask again.
    if (n < BATCH) return;
  }
}

// Frees what the listener holds apart from the struct itself.
static void release(Listener *l) {
  if (l->callback != NULL) napi_delete_reference(l->env, l->callback);
  if (l->shared_ref != NULL) napi_delete_reference(l->env, l->shared_ref);
  if (l->async != NULL) napi_async_destroy(l->env, l->async);
  l->callback = NULL;
  l->shared_ref = NULL;
  l->async = NULL;
  free(l->heads);
  free(l->tails);
  l->heads = NULL;
  l->tails = NULL;
}

// The struct goes once neither the poll handle nor JavaScript's handle to it is left: an upstream answer that comes
// after close still calls sendTo with that handle.
static void free_if_unused(Listener *l) {
  if (!l->polling && !l->referenced) free(l);
}

static void on_closed(uv_handle_t *h) {
  Listener *l = (Listener *)h->data;
  if (l->fd >= 0) close(l->fd);
  release(l);
  l->polling = 0;
  free_if_unused(l);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  Listener *l = (Listener *)data;
  l->referenced = 0;
  free_if_unused(l);
}

static napi_value open_failed(napi_env env, Listener *l, int fd, const char *why) {
  release(l);
  free(l);
  close(fd);
  napi_throw_error(env, NULL, why);
  return NULL;
}

// open(fd, onBatch): starts answering on a bound socket (one from bind, or inherited from the primary process), and
// owns the descriptor from then on, closing it on failure too. onBatch(packets: Buffer, count: number) returns how
// many answers it put into the shared table.
static napi_value Open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "onBatch must be a function");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  Listener *l = calloc(1, sizeof *l);
  if (l == NULL) {
    close(fd);
    return throw_errno(env, ENOMEM, "open");
  }
  l->env = env;
  l->fd = fd;
  l->heads = malloc((size_t)BATCH * HEAD);
  l->tails = malloc((size_t)BATCH * (SLOT - HEAD));
  if (l->heads == NULL || l->tails == NULL) return open_failed(env, l, fd, "open: out of memory");
  for (int i = 0; i < BATCH; i++) {
    l->iov[i][0].iov_base = l->heads + (size_t)i * HEAD;
    l->iov[i][0].iov_len = HEAD;
    l->iov[i][1].iov_base = l->tails + (size_t)i * (SLOT - HEAD);
    l->iov[i][1].iov_len = SLOT - HEAD;
    l->msgs[i].msg_hdr.msg_name = &l->peers[i];
    l->msgs[i].msg_hdr.msg_iov = l->iov[i];
    l->msgs[i].msg_hdr.msg_iovlen = 2;
  }
  napi_value shared, name, handle;
  void *bytes;
  if (napi_create_arraybuffer(env, SHARED_BYTES, &bytes, &shared) != napi_ok || napi_create_reference(env, shared, 1, &l->shared_ref) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &l->callback) != napi_ok || napi_create_string_utf8(env, "cyfs-ns:udp-batch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &l->async) != napi_ok)
    return open_failed(env, l, fd, "open: cannot set up the listener");
  l->shared = bytes;
  l->poll.data = l;
  int err = uv_poll_init(loop, &l->poll, fd);
  if (err != 0) return open_failed(env, l, fd, uv_strerror(err));
  l->polling = 1;
  if (napi_create_external(env, l, on_finalize, NULL, &handle) == napi_ok) l->referenced = 1;
  else err = UV_ENOMEM;
  if (err == 0) err = uv_poll_start(&l->poll, UV_READABLE, on_readable);
  if (err != 0) {
    l->closing = 1;
    uv_close((uv_handle_t *)&l->poll, on_closed);
    napi_throw_error(env, NULL, uv_strerror(err));
    return NULL;
  }
  return handle;
}

// shared(listener): the table and arena JavaScript reads packets' places from and writes answers into.
static napi_value Shared(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!get_args(env, info, 1, argv)) return NULL;
  Listener *l = listener_of(env, argv[0]);
  if (l == NULL) return NULL;
  if (l->closing) {
    napi_throw_error(env, NULL, "the listener is closed");
    return NULL;
  }
  CHECK(napi_get_reference_value(env, l->shared_ref, &out));
  return out;
}

// sendTo(listener, answer, peer): one answer now, to a peer (28 bytes) copied from the table earlier; 0 or an errno.
static napi_value SendTo(napi_env env, napi_callback_info info) {
  napi_value argv[3], out;
  if (!get_args(env, info, 3, argv)) return NULL;
  Listener *l = listener_of(env, argv[0]);
  if (l == NULL) return NULL;
  void *data, *peer;
  size_t len, peer_len;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_buffer_info(env, argv[2], &peer, &peer_len));
  struct sockaddr_in6 sa;
  memset(&sa, 0, sizeof sa);
  memcpy(&sa, peer, peer_len < sizeof sa ? peer_len : sizeof sa);
  int err = 0;
  if (l->closing) err = EBADF;
  else if (sendto(l->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&sa, addr_len(&sa)) < 0) err = errno;
  CHECK(napi_create_int32(env, err, &out));
  return out;
}

// close(listener): stops answering and closes the socket.
static napi_value Close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  Listener *l = listener_of(env, argv[0]);
  if (l == NULL || l->closing) return NULL;
  l->closing = 1;
  uv_poll_stop(&l->poll);
  uv_close((uv_handle_t *)&l->poll, on_closed);
  return NULL;
}

// trim(): returns the malloc heap's free pages to the system; true when some were.
static napi_value Trim(napi_env env, napi_callback_info info) {
  napi_value out;
  CHECK(napi_get_boolean(env, malloc_trim(0) == 1, &out));
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"bind", NULL, Bind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"port", NULL, Port, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, Open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shared", NULL, Shared, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendTo", NULL, SendTo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"trim", NULL, Trim, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
  const struct {
    const char *name;
    int32_t value;
  } consts[] = {{"BATCH", BATCH}, {"META_WORDS", META_WORDS}, {"ANSWER_WORDS", ANSWER_WORDS}, {"ARENA_BYTES", ARENA_BYTES}, {"AF_INET", AF_INET}};
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    napi_value v;
    CHECK(napi_create_int32(env, consts[i].value, &v));
    CHECK(napi_set_named_property(env, exports, consts[i].name, v));
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
