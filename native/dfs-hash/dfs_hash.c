// Chunking and hashing for dcfs-lite's write and read paths (src/storage/dfs/native-hash.ts loads it; chunker.ts and
// hashing.ts fall back to JavaScript without it, with identical results).
//
// A 1 GiB upload costs the storage service a gear scan (FastCDC's cut search), a SHA-256 of the whole file, a SHA-256
// and a CRC-32 of every chunk: in JavaScript and on the event loop about 2.3 CPU seconds, which left one core doing
// all of it while the other waited. Here the scan runs in C (a third of the JavaScript loop's time), and the hashes
// run on libuv's thread pool, reading the caller's buffer in place (WebCrypto copies it first), so the event loop only
// receives and stores. SHA-256 is OpenSSL's and CRC-32 zlib's, both the ones this Node process already carries.
#include <errno.h>
#include <node_api.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#define CHECK(call)                                   \
  do {                                                \
    if ((call) != napi_ok) {                          \
      napi_throw_error(env, NULL, "dfs-hash: " #call); \
      return NULL;                                    \
    }                                                 \
  } while (0)

// ---- gear scan ------------------------------------------------------------------------------------------------------

// The elements of `v` if it is a typed array of `type` with a length in [min, max]; else throws TypeError `what`
// (or napi's own error) and answers NULL.
static void *TypedArrayArg(napi_env env, napi_value v, napi_typedarray_type type, size_t min, size_t max, const char *what) {
  napi_typedarray_type t;
  size_t n, off;
  void *data;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &t, &n, &data, &ab, &off) != napi_ok || t != type || n < min || n > max) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  return data;
}

// scan(src, start, n0, state, params, gear) -> index just past the cut, or -1 when src ends first.
// state: Int32Array [h]; params: Int32Array [min, avg, max, maskS, maskL]; gear: Uint32Array(256).
// The same steps as Chunker.scan in chunker.ts, which the tests hold it to.
static napi_value Scan(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 6) {
    napi_throw_type_error(env, NULL, "scan(src, start, n0, state, params, gear)");
    return NULL;
  }
  uint8_t *src;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], (void **)&src, &len));
  int64_t start, n0;
  CHECK(napi_get_value_int64(env, argv[1], &start));
  CHECK(napi_get_value_int64(env, argv[2], &n0));
  int32_t *state = TypedArrayArg(env, argv[3], napi_int32_array, 1, SIZE_MAX, "scan: state must be an Int32Array of 1");
  if (!state) return NULL;
  const int32_t *p = TypedArrayArg(env, argv[4], napi_int32_array, 5, SIZE_MAX, "scan: params must be an Int32Array of 5");
  if (!p) return NULL;
  const uint32_t *gear = TypedArrayArg(env, argv[5], napi_uint32_array, 256, 256, "scan: gear must be a Uint32Array of 256");
  if (!gear) return NULL;
  if (start < 0 || (uint64_t)start > len) {
    napi_throw_range_error(env, NULL, "scan: start outside src");
    return NULL;
  }

  const int64_t min = p[0], avg = p[1], max = p[2];
  const uint32_t maskS = (uint32_t)p[3], maskL = (uint32_t)p[4];
  const int64_t end = (int64_t)len;
  int64_t i = start;
  uint32_t h = (uint32_t)state[0];
  int64_t cut = -1;
  if (n0 + i < min) i = end < min - n0 ? end : min - n0;
  const int64_t normalEnd = end < avg - n0 ? end : avg - n0;
  for (; i < normalEnd; i++) {
    h = (h << 1) + gear[src[i]];
    if ((h & maskS) == 0) {
      cut = i + 1;
      goto done;
    }
  }
  const int64_t hardEnd = end < max - n0 ? end : max - n0;
  for (; i < hardEnd; i++) {
    h = (h << 1) + gear[src[i]];
    if ((h & maskL) == 0) {
      cut = i + 1;
      goto done;
    }
  }
  if (n0 + i >= max) cut = i;
done:
  state[0] = cut >= 0 ? 0 : (int32_t)h;
  napi_value out;
  CHECK(napi_create_int64(env, cut, &out));
  return out;
}

// ---- hashing on the thread pool -------------------------------------------------------------------------------------

// A file's running SHA-256, updated by digest() in the order the caller issues them (one at a time per file).
typedef struct {
  EVP_MD_CTX *ctx;
  int busy;
} FileHash;

static void FileHashFinalize(napi_env env, void *data, void *hint) {
  FileHash *f = data;
  EVP_MD_CTX_free(f->ctx);
  free(f);
}

// fileHash() -> an opaque handle for digest() and fileDigest().
static napi_value NewFileHash(napi_env env, napi_callback_info info) {
  FileHash *f = calloc(1, sizeof *f);
  if (!f || !(f->ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(f->ctx, EVP_sha256(), NULL) != 1) {
    if (f) EVP_MD_CTX_free(f->ctx);
    free(f);
    napi_throw_error(env, NULL, "dfs-hash: cannot start a SHA-256");
    return NULL;
  }
  napi_value out;
  if (napi_create_external(env, f, FileHashFinalize, NULL, &out) != napi_ok) {
    FileHashFinalize(env, f, NULL);
    napi_throw_error(env, NULL, "dfs-hash: napi_create_external");
    return NULL;
  }
  return out;
}

static FileHash *GetFileHash(napi_env env, napi_value v) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_external) return NULL;
  void *p;
  return napi_get_value_external(env, v, &p) == napi_ok ? p : NULL;
}

// fileDigest(handle) -> Buffer(32); the handle is spent.
static napi_value FileDigest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  FileHash *f = argc == 1 ? GetFileHash(env, argv[0]) : NULL;
  if (!f || f->busy) {
    napi_throw_error(env, NULL, f ? "fileDigest: a digest() is still under way" : "fileDigest(handle)");
    return NULL;
  }
  uint8_t *out;
  napi_value buf;
  unsigned int n = 0;
  CHECK(napi_create_buffer(env, 32, (void **)&out, &buf));
  if (EVP_DigestFinal_ex(f->ctx, out, &n) != 1 || n != 32) {
    napi_throw_error(env, NULL, "dfs-hash: SHA-256 final failed");
    return NULL;
  }
  return buf;
}

enum { WANT_SHA = 1, WANT_CRC = 2 };

typedef struct {
  napi_async_work work;
  napi_ref buffer;    // keeps the bytes alive (and in place) until the work is done
  napi_ref file_ref;  // keeps the file's handle alive
  napi_ref callback;
  uint8_t *data;
  size_t len;
  FileHash *file;
  int want;
  int ok;
  uint8_t sha[32];
  uint32_t crc;
  // readDigest: the file to fill the buffer from (-1: digest() of bytes at hand), where, and the errno of a failed read.
  int fd;
  int64_t pos;
  int read_errno;
} HashWork;

static void HashExecute(napi_env env, void *data) {
  HashWork *w = data;
  w->ok = 1;
  if (w->fd >= 0) {
    // The buffer's whole length, or up to the end of the file; what was read is what gets hashed.
    size_t done = 0;
    size_t want = w->len;
    while (done < want) {
      ssize_t n = pread(w->fd, w->data + done, want - done, (off_t)(w->pos + (int64_t)done));
      if (n < 0) {
        if (errno == EINTR) continue;
        w->read_errno = errno;
        return;
      }
      if (n == 0) break;
      done += (size_t)n;
    }
    w->len = done;
  }
  if (w->file && EVP_DigestUpdate(w->file->ctx, w->data, w->len) != 1) w->ok = 0;
  if (w->want & WANT_SHA) {
    unsigned int n = 0;
    if (EVP_Digest(w->data, w->len, w->sha, &n, EVP_sha256(), NULL) != 1 || n != 32) w->ok = 0;
  }
  if (w->want & WANT_CRC) {
    // crc32_z takes a size_t length; one call covers a buffer of any size.
    w->crc = (uint32_t)crc32_z(0L, w->data, w->len);
  }
}

static void HashComplete(napi_env env, napi_status status, void *data) {
  HashWork *w = data;
  if (w->file) w->file->busy = 0;
  napi_value cb, global, argv[4];
  napi_get_reference_value(env, w->callback, &cb);
  napi_get_global(env, &global);
  napi_create_int64(env, (int64_t)w->len, &argv[3]);
  if (status == napi_ok && w->read_errno) {
    // As node:fs reports a failed read: the errno's name as the error's code.
    napi_value code, msg;
    napi_create_string_utf8(env, uv_err_name(-w->read_errno), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, strerror(w->read_errno), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &argv[0]);
    napi_get_undefined(env, &argv[1]);
    napi_get_undefined(env, &argv[2]);
  } else if (status != napi_ok || !w->ok) {
    napi_value msg;
    napi_create_string_utf8(env, status != napi_ok ? "dfs-hash: work cancelled" : "dfs-hash: SHA-256 failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &argv[0]);
    napi_get_undefined(env, &argv[1]);
    napi_get_undefined(env, &argv[2]);
  } else {
    napi_get_null(env, &argv[0]);
    if (w->want & WANT_SHA) {
      void *out;
      napi_create_buffer_copy(env, 32, w->sha, &out, &argv[1]);
    } else {
      napi_get_null(env, &argv[1]);
    }
    napi_create_uint32(env, w->crc, &argv[2]);
  }
  napi_call_function(env, global, cb, 4, argv, NULL);
  napi_delete_reference(env, w->buffer);
  if (w->file_ref) napi_delete_reference(env, w->file_ref);
  napi_delete_reference(env, w->callback);
  napi_delete_async_work(env, w->work);
  free(w);
}

// A work item over buf's bytes (fd -1: hash them; else read into them from fd at pos first); NULL after throwing.
static HashWork *NewWork(napi_env env, napi_value buf, int want, int fd, int64_t pos) {
  HashWork *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "dfs-hash: out of memory");
    return NULL;
  }
  w->want = want;
  w->fd = fd;
  w->pos = pos;
  if (napi_get_buffer_info(env, buf, (void **)&w->data, &w->len) != napi_ok) {
    free(w);
    napi_throw_error(env, NULL, "dfs-hash: napi_get_buffer_info");
    return NULL;
  }
  return w;
}

// Queues w (its data, len, file, want, fd and pos set) with buf, file and callback kept alive until it completes; on
// failure frees w and throws.
static napi_value Queue(napi_env env, HashWork *w, napi_value buf, napi_value file, napi_value callback) {
  napi_value name;
  if (napi_create_reference(env, buf, 1, &w->buffer) != napi_ok ||
      (w->file && napi_create_reference(env, file, 1, &w->file_ref) != napi_ok) ||
      napi_create_reference(env, callback, 1, &w->callback) != napi_ok ||
      napi_create_string_utf8(env, "dfs-hash", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, HashExecute, HashComplete, w, &w->work) != napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    if (w->buffer) napi_delete_reference(env, w->buffer);
    if (w->file_ref) napi_delete_reference(env, w->file_ref);
    if (w->callback) napi_delete_reference(env, w->callback);
    if (w->work) napi_delete_async_work(env, w->work);
    free(w);
    napi_throw_error(env, NULL, "dfs-hash: cannot queue the work");
    return NULL;
  }
  if (w->file) w->file->busy = 1;
  return NULL;
}

// digest(buf, fileHandle | null, want, callback(err, sha: Buffer | null, crc: number, length)): on the thread pool,
// adds buf to the file's SHA-256 (if a handle is given), and takes buf's own SHA-256 (want & 1) and CRC-32
// (want & 2). buf must not change until the callback; one digest at a time per file handle.
static napi_value Digest(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) {
    napi_throw_type_error(env, NULL, "digest(buf, file, want, callback)");
    return NULL;
  }
  bool isBuffer;
  CHECK(napi_is_buffer(env, argv[0], &isBuffer));
  napi_valuetype cbType, fileType;
  CHECK(napi_typeof(env, argv[3], &cbType));
  CHECK(napi_typeof(env, argv[1], &fileType));
  int32_t want;
  CHECK(napi_get_value_int32(env, argv[2], &want));
  if (!isBuffer || cbType != napi_function || (fileType != napi_null && fileType != napi_external) || want < 0 || want > 3) {
    napi_throw_type_error(env, NULL, "digest(buf: Buffer, file: handle | null, want: 0..3, callback)");
    return NULL;
  }
  FileHash *file = fileType == napi_external ? GetFileHash(env, argv[1]) : NULL;
  if (file && file->busy) {
    napi_throw_error(env, NULL, "digest: the file's previous digest is still under way");
    return NULL;
  }
  HashWork *w = NewWork(env, argv[0], want, -1, 0);
  if (!w) return NULL;
  w->file = file;
  return Queue(env, w, argv[0], argv[1], argv[3]);
}

// readDigest(fd, buf, position, want, callback(err, sha: Buffer | null, crc: number, length)): on the thread pool,
// fills buf from the file at position (all of it, or up to the file's end: length says how much), then takes the
// SHA-256 (want & 1) and CRC-32 (want & 2) of what was read. One trip to the pool where a read and a check would
// each take one: every dispatch costs the event loop some 30 microseconds here, more than a 256 KiB chunk's CRC.
// The caller keeps fd open until the callback.
static napi_value ReadDigest(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool isBuffer = false;
  napi_valuetype cbType = napi_undefined;
  int32_t fd = -1, want = -1;
  int64_t pos = -1;
  if (argc == 5) {
    CHECK(napi_is_buffer(env, argv[1], &isBuffer));
    CHECK(napi_typeof(env, argv[4], &cbType));
    if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[2], &pos) != napi_ok ||
        napi_get_value_int32(env, argv[3], &want) != napi_ok) {
      fd = -1;
    }
  }
  if (!isBuffer || cbType != napi_function || fd < 0 || pos < 0 || want < 0 || want > 3) {
    napi_throw_type_error(env, NULL, "readDigest(fd: int >= 0, buf: Buffer, position: int >= 0, want: 0..3, callback)");
    return NULL;
  }
  HashWork *w = NewWork(env, argv[1], want, fd, pos);
  return w ? Queue(env, w, argv[1], NULL, argv[4]) : NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"scan", NULL, Scan, NULL, NULL, NULL, napi_default, NULL},
      {"fileHash", NULL, NewFileHash, NULL, NULL, NULL, napi_default, NULL},
      {"fileDigest", NULL, FileDigest, NULL, NULL, NULL, napi_default, NULL},
      {"digest", NULL, Digest, NULL, NULL, NULL, napi_default, NULL},
      {"readDigest", NULL, ReadDigest, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof *props, props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
