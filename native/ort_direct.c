// ort_direct: ONNX Runtime sessions called from JavaScript without copying what they return.
//
// onnxruntime-node's binding returns every output as a fresh copy, even an output the caller gave
// a buffer for (ONNX Runtime writes into that buffer, then the binding copies it into a new
// ArrayBuffer). A decoding step's outputs are mostly the recurrent state: 8.5 MB a step at 32 rows
// of the shipped model, copied and garbage at once. This addon runs the same library (the
// libonnxruntime.so.1 inside onnxruntime-node, loaded once per process) through its C API:
// - an output given a typed array is written there and nothing else happens;
// - an output given none is allocated by ONNX Runtime and copied once into a new ArrayBuffer, as
//   onnxruntime-node does (an external ArrayBuffer over ONNX Runtime's memory would save the copy,
//   but the engine transfers finished sequences' state between threads, and a buffer whose memory
//   another library frees cannot safely move to another isolate).
// CPU only: the CUDA provider stays with onnxruntime-node (src/engine/ort-session.ts).
//
// The C API is a versioned table of function pointers (OrtApiBase.GetApi) that ONNX Runtime only
// ever appends to. Only the entries used here are declared, by their index in the table
// (onnxruntime_c_api.h, stable since API version 1; AddSessionConfigEntry since version 4).
//
// JavaScript surface (src/engine/native-session.ts):
//   init(libPath) -> ONNX Runtime's version string
//   create(modelPath, intraOpThreads, interOpThreads, allowSpinning) -> { session, inputs, outputs }
//   run(session, inputIndices, inputArrays, inputDims, outputIndices, outputArrays, outputDims)
//     -> an array with, per output, null (written into the given array) or [typedArray, dims]
//   release(session)
#define NAPI_VERSION 8
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtValue OrtValue;
typedef struct OrtAllocator OrtAllocator;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;

enum { ELEM_FLOAT = 1, ELEM_INT32 = 6, ELEM_INT64 = 7 };  // ONNXTensorElementDataType
enum { LOG_WARNING = 2 };                                  // OrtLoggingLevel
enum { ARENA_ALLOCATOR = 1, MEM_TYPE_DEFAULT = 0 };        // OrtAllocatorType, OrtMemType
enum { OPTIMIZE_ALL = 99 };                                // GraphOptimizationLevel

// Indices into the OrtApi table.
enum {
  I_GetErrorMessage = 2,
  I_CreateEnv = 3,
  I_CreateSession = 7,
  I_Run = 9,
  I_CreateSessionOptions = 10,
  I_SetSessionGraphOptimizationLevel = 23,
  I_SetIntraOpNumThreads = 24,
  I_SetInterOpNumThreads = 25,
  I_SessionGetInputCount = 30,
  I_SessionGetOutputCount = 31,
  I_SessionGetInputName = 36,
  I_SessionGetOutputName = 37,
  I_CreateTensorWithDataAsOrtValue = 49,
  I_GetTensorMutableData = 51,
  I_GetTensorElementType = 60,
  I_GetDimensionsCount = 61,
  I_GetDimensions = 62,
  I_GetTensorTypeAndShape = 65,
  I_CreateCpuMemoryInfo = 69,
  I_AllocatorFree = 76,
  I_GetAllocatorWithDefaultOptions = 78,
  I_ReleaseStatus = 93,
  I_ReleaseSession = 95,
  I_ReleaseValue = 96,
  I_ReleaseTensorTypeAndShapeInfo = 99,
  I_ReleaseSessionOptions = 100,
  I_AddSessionConfigEntry = 130,
};
#define API_VERSION 4

typedef struct { const void *(*GetApi)(uint32_t version); const char *(*GetVersionString)(void); } OrtApiBase;

static void *const *api;  // the OrtApi table
static OrtEnv *ort_env;
static OrtMemoryInfo *cpu;
static const char *version = "";
static char init_error[4608];
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

#define F(name, ret, ...) ((ret(*)(__VA_ARGS__))api[I_##name])

// Every ORT call returns a status: NULL is success.
static int failed (napi_env e, OrtStatus *s) {
  if (s == NULL) return 0;
  napi_throw_error(e, NULL, F(GetErrorMessage, const char *, OrtStatus *)(s));
  F(ReleaseStatus, void, OrtStatus *)(s);
  return 1;
}

#define NAPI(call) do { if ((call) != napi_ok) { napi_throw_error(e, NULL, "ort_direct: " #call " failed"); return NULL; } } while (0)

static napi_value init (napi_env e, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI(napi_get_cb_info(e, info, &argc, argv, NULL, NULL));
  char path[4096];
  NAPI(napi_get_value_string_utf8(e, argv[0], path, sizeof path, NULL));
  pthread_mutex_lock(&init_lock);
  if (api == NULL && init_error[0] == 0) {
    // The copy onnxruntime-node's binding links against: already loaded, this returns it.
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const OrtApiBase *(*get_base)(void) = lib == NULL ? NULL : (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
    const OrtApiBase *base = get_base == NULL ? NULL : get_base();
    void *const *table = base == NULL ? NULL : (void *const *)base->GetApi(API_VERSION);
    if (table == NULL) {
      snprintf(init_error, sizeof init_error, "ort_direct: cannot load ONNX Runtime's C API from %s: %s", path, lib == NULL ? dlerror() : "no OrtGetApiBase or API version");
    } else {
      api = table;
      version = base->GetVersionString();
      OrtStatus *s = F(CreateEnv, OrtStatus *, int, const char *, OrtEnv **)(LOG_WARNING, "t2r-serve", &ort_env);
      if (s == NULL) s = F(CreateCpuMemoryInfo, OrtStatus *, int, int, OrtMemoryInfo **)(ARENA_ALLOCATOR, MEM_TYPE_DEFAULT, &cpu);
      if (s != NULL) {
        snprintf(init_error, sizeof init_error, "ort_direct: %s", F(GetErrorMessage, const char *, OrtStatus *)(s));
        F(ReleaseStatus, void, OrtStatus *)(s);
        api = NULL;
      }
    }
  }
  pthread_mutex_unlock(&init_lock);
  if (api == NULL) {
    napi_throw_error(e, NULL, init_error);
    return NULL;
  }
  napi_value out;
  NAPI(napi_create_string_utf8(e, version, NAPI_AUTO_LENGTH, &out));
  return out;
}

typedef struct {
  OrtSession *session;
  size_t n_in, n_out;
  char **in_names, **out_names;
} Session;

static void free_names (char **names, size_t n) {
  if (names == NULL) return;
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

static void session_free (Session *s) {
  if (s->session != NULL) F(ReleaseSession, void, OrtSession *)(s->session);
  free_names(s->in_names, s->n_in);
  free_names(s->out_names, s->n_out);
  s->session = NULL;
  s->in_names = s->out_names = NULL;
}

static void session_finalize (napi_env e, void *data, void *hint) {
  (void)e; (void)hint;
  session_free((Session *)data);
  free(data);
}

// The session's input (or output) names, copied out of ORT's allocator; -> 0 on success.
static int read_names (napi_env e, Session *s, int outputs) {
  OrtAllocator *alloc;
  if (failed(e, F(GetAllocatorWithDefaultOptions, OrtStatus *, OrtAllocator **)(&alloc))) return 1;
  size_t n;
  if (failed(e, (outputs ? F(SessionGetOutputCount, OrtStatus *, OrtSession *, size_t *) : F(SessionGetInputCount, OrtStatus *, OrtSession *, size_t *))(s->session, &n))) return 1;
  char **names = calloc(n, sizeof(char *));
  if (outputs) { s->out_names = names; s->n_out = n; } else { s->in_names = names; s->n_in = n; }
  for (size_t i = 0; i < n; i++) {
    char *name;
    OrtStatus *st = (outputs ? F(SessionGetOutputName, OrtStatus *, OrtSession *, size_t, OrtAllocator *, char **) : F(SessionGetInputName, OrtStatus *, OrtSession *, size_t, OrtAllocator *, char **))(s->session, i, alloc, &name);
    if (failed(e, st)) return 1;
    names[i] = strdup(name);
    F(AllocatorFree, OrtStatus *, OrtAllocator *, void *)(alloc, name);
  }
  return 0;
}

static napi_value names_array (napi_env e, char **names, size_t n) {
  napi_value arr, v;
  NAPI(napi_create_array_with_length(e, n, &arr));
  for (size_t i = 0; i < n; i++) {
    NAPI(napi_create_string_utf8(e, names[i], NAPI_AUTO_LENGTH, &v));
    NAPI(napi_set_element(e, arr, i, v));
  }
  return arr;
}

static napi_value create (napi_env e, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI(napi_get_cb_info(e, info, &argc, argv, NULL, NULL));
  if (api == NULL) { napi_throw_error(e, NULL, "ort_direct: init() first"); return NULL; }
  char path[4096];
  int32_t intra, inter;
  bool spinning;
  NAPI(napi_get_value_string_utf8(e, argv[0], path, sizeof path, NULL));
  NAPI(napi_get_value_int32(e, argv[1], &intra));
  NAPI(napi_get_value_int32(e, argv[2], &inter));
  NAPI(napi_get_value_bool(e, argv[3], &spinning));

  OrtSessionOptions *opts;
  if (failed(e, F(CreateSessionOptions, OrtStatus *, OrtSessionOptions **)(&opts))) return NULL;
  OrtStatus *st = F(SetIntraOpNumThreads, OrtStatus *, OrtSessionOptions *, int)(opts, intra);
  if (st == NULL) st = F(SetInterOpNumThreads, OrtStatus *, OrtSessionOptions *, int)(opts, inter);
  if (st == NULL) st = F(SetSessionGraphOptimizationLevel, OrtStatus *, OrtSessionOptions *, int)(opts, OPTIMIZE_ALL);
  if (st == NULL) st = F(AddSessionConfigEntry, OrtStatus *, OrtSessionOptions *, const char *, const char *)(opts, "session.intra_op.allow_spinning", spinning ? "1" : "0");
  Session *s = calloc(1, sizeof(Session));
  if (st == NULL) st = F(CreateSession, OrtStatus *, OrtEnv *, const char *, OrtSessionOptions *, OrtSession **)(ort_env, path, opts, &s->session);
  F(ReleaseSessionOptions, void, OrtSessionOptions *)(opts);
  if (failed(e, st) || read_names(e, s, 0) || read_names(e, s, 1)) {
    session_free(s);
    free(s);
    return NULL;
  }
  napi_value handle, out;
  NAPI(napi_create_object(e, &handle));
  NAPI(napi_wrap(e, handle, s, session_finalize, NULL, NULL));
  NAPI(napi_create_object(e, &out));
  NAPI(napi_set_named_property(e, out, "session", handle));
  NAPI(napi_set_named_property(e, out, "inputs", names_array(e, s->in_names, s->n_in)));
  NAPI(napi_set_named_property(e, out, "outputs", names_array(e, s->out_names, s->n_out)));
  return out;
}

static Session *unwrap (napi_env e, napi_value handle) {
  Session *s = NULL;
  if (napi_unwrap(e, handle, (void **)&s) != napi_ok || s == NULL || s->session == NULL) {
    napi_throw_error(e, NULL, "ort_direct: the session was released");
    return NULL;
  }
  return s;
}

static napi_value release (napi_env e, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI(napi_get_cb_info(e, info, &argc, argv, NULL, NULL));
  Session *s = NULL;
  if (napi_unwrap(e, argv[0], (void **)&s) == napi_ok && s != NULL) session_free(s);
  return NULL;
}

static int element_type (napi_typedarray_type t, size_t *size) {
  switch (t) {
    case napi_float32_array: *size = 4; return ELEM_FLOAT;
    case napi_int32_array: *size = 4; return ELEM_INT32;
    case napi_bigint64_array: *size = 8; return ELEM_INT64;
    default: return 0;
  }
}

#define MAX_TENSORS 256
#define MAX_RANK 8

// A tensor over the typed array `arr` shaped `dims` (a JS array of numbers); -> 0 on success.
static int wrap_tensor (napi_env e, napi_value arr, napi_value dims, OrtValue **out, const char *name) {
  char msg[512];
  napi_typedarray_type t;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(e, arr, &t, &length, &data, NULL, NULL) != napi_ok) {
    snprintf(msg, sizeof msg, "ort_direct: %s: expected a typed array", name);
    napi_throw_type_error(e, NULL, msg);
    return 1;
  }
  size_t size;
  int type = element_type(t, &size);
  uint32_t rank;
  int64_t shape[MAX_RANK];
  if (type == 0 || napi_get_array_length(e, dims, &rank) != napi_ok || rank > MAX_RANK) {
    snprintf(msg, sizeof msg, "ort_direct: %s: a Float32Array, Int32Array or BigInt64Array and at most %d dims", name, MAX_RANK);
    napi_throw_type_error(e, NULL, msg);
    return 1;
  }
  size_t count = 1;
  for (uint32_t i = 0; i < rank; i++) {
    napi_value d;
    double v;
    if (napi_get_element(e, dims, i, &d) != napi_ok || napi_get_value_double(e, d, &v) != napi_ok || v < 0) {
      snprintf(msg, sizeof msg, "ort_direct: %s: dims must be non-negative numbers", name);
      napi_throw_type_error(e, NULL, msg);
      return 1;
    }
    shape[i] = (int64_t)v;
    count *= (size_t)v;
  }
  if (count != length) {
    snprintf(msg, sizeof msg, "ort_direct: %s: %zu elements given for dims of %zu", name, length, count);
    napi_throw_range_error(e, NULL, msg);
    return 1;
  }
  return failed(e, F(CreateTensorWithDataAsOrtValue, OrtStatus *, OrtMemoryInfo *, void *, size_t, const int64_t *, size_t, int, OrtValue **)(cpu, data, length * size, shape, rank, type, out));
}

// An output ONNX Runtime allocated, copied out as [typedArray, dims].
static napi_value adopt (napi_env e, OrtValue *v) {
  OrtTensorTypeAndShapeInfo *ti;
  if (failed(e, F(GetTensorTypeAndShape, OrtStatus *, OrtValue *, OrtTensorTypeAndShapeInfo **)(v, &ti))) return NULL;
  int type = 0;
  size_t rank = 0;
  int64_t shape[MAX_RANK];
  OrtStatus *st = F(GetTensorElementType, OrtStatus *, OrtTensorTypeAndShapeInfo *, int *)(ti, &type);
  if (st == NULL) st = F(GetDimensionsCount, OrtStatus *, OrtTensorTypeAndShapeInfo *, size_t *)(ti, &rank);
  if (st == NULL && rank > MAX_RANK) { F(ReleaseTensorTypeAndShapeInfo, void, OrtTensorTypeAndShapeInfo *)(ti); napi_throw_error(e, NULL, "ort_direct: output rank above 8"); return NULL; }
  if (st == NULL) st = F(GetDimensions, OrtStatus *, OrtTensorTypeAndShapeInfo *, int64_t *, size_t)(ti, shape, rank);
  F(ReleaseTensorTypeAndShapeInfo, void, OrtTensorTypeAndShapeInfo *)(ti);
  if (failed(e, st)) return NULL;
  napi_typedarray_type t;
  size_t size;
  switch (type) {
    case ELEM_FLOAT: t = napi_float32_array; size = 4; break;
    case ELEM_INT32: t = napi_int32_array; size = 4; break;
    case ELEM_INT64: t = napi_bigint64_array; size = 8; break;
    default: napi_throw_error(e, NULL, "ort_direct: an output of a type other than float32, int32 or int64"); return NULL;
  }
  size_t count = 1;
  for (size_t i = 0; i < rank; i++) count *= (size_t)shape[i];
  void *data, *copy;
  if (failed(e, F(GetTensorMutableData, OrtStatus *, OrtValue *, void **)(v, &data))) return NULL;
  napi_value buffer, arr, dims, d, pair;
  NAPI(napi_create_arraybuffer(e, count * size, &copy, &buffer));
  if (count > 0) memcpy(copy, data, count * size);
  NAPI(napi_create_typedarray(e, t, count, buffer, 0, &arr));
  NAPI(napi_create_array_with_length(e, rank, &dims));
  for (size_t i = 0; i < rank; i++) {
    NAPI(napi_create_double(e, (double)shape[i], &d));
    NAPI(napi_set_element(e, dims, i, d));
  }
  NAPI(napi_create_array_with_length(e, 2, &pair));
  NAPI(napi_set_element(e, pair, 0, arr));
  NAPI(napi_set_element(e, pair, 1, dims));
  return pair;
}

static napi_value run (napi_env e, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  NAPI(napi_get_cb_info(e, info, &argc, argv, NULL, NULL));
  Session *s = unwrap(e, argv[0]);
  if (s == NULL) return NULL;
  uint32_t n_in, n_out;
  NAPI(napi_get_array_length(e, argv[1], &n_in));
  NAPI(napi_get_array_length(e, argv[4], &n_out));
  if (n_in > MAX_TENSORS || n_out > MAX_TENSORS) { napi_throw_range_error(e, NULL, "ort_direct: more than 256 inputs or outputs"); return NULL; }
  const char *in_names[MAX_TENSORS], *out_names[MAX_TENSORS];
  OrtValue *ins[MAX_TENSORS] = {0}, *outs[MAX_TENSORS] = {0};
  int given[MAX_TENSORS] = {0};
  int bad = 0;
  for (uint32_t i = 0; i < n_in && !bad; i++) {
    napi_value idx, arr, dims;
    uint32_t k;
    NAPI(napi_get_element(e, argv[1], i, &idx));
    NAPI(napi_get_value_uint32(e, idx, &k));
    if (k >= s->n_in) { napi_throw_range_error(e, NULL, "ort_direct: no such input"); bad = 1; break; }
    in_names[i] = s->in_names[k];
    NAPI(napi_get_element(e, argv[2], i, &arr));
    NAPI(napi_get_element(e, argv[3], i, &dims));
    bad = wrap_tensor(e, arr, dims, &ins[i], in_names[i]);
  }
  for (uint32_t i = 0; i < n_out && !bad; i++) {
    napi_value idx, arr, dims;
    napi_valuetype vt;
    uint32_t k;
    NAPI(napi_get_element(e, argv[4], i, &idx));
    NAPI(napi_get_value_uint32(e, idx, &k));
    if (k >= s->n_out) { napi_throw_range_error(e, NULL, "ort_direct: no such output"); bad = 1; break; }
    out_names[i] = s->out_names[k];
    NAPI(napi_get_element(e, argv[5], i, &arr));
    NAPI(napi_typeof(e, arr, &vt));
    if (vt == napi_null || vt == napi_undefined) continue;
    NAPI(napi_get_element(e, argv[6], i, &dims));
    given[i] = 1;
    bad = wrap_tensor(e, arr, dims, &outs[i], out_names[i]);
  }
  if (!bad) {
    OrtStatus *st = F(Run, OrtStatus *, OrtSession *, const void *, const char *const *, OrtValue *const *, size_t, const char *const *, size_t, OrtValue **)(s->session, NULL, in_names, ins, n_in, out_names, n_out, outs);
    bad = failed(e, st);
  }
  for (uint32_t i = 0; i < n_in; i++) if (ins[i] != NULL) F(ReleaseValue, void, OrtValue *)(ins[i]);
  napi_value result = NULL, none;
  if (!bad && napi_create_array_with_length(e, n_out, &result) == napi_ok && napi_get_null(e, &none) == napi_ok) {
    for (uint32_t i = 0; i < n_out; i++) {
      napi_value item = none;
      if (!given[i]) {
        item = adopt(e, outs[i]);
        if (item == NULL) { result = NULL; break; }
      }
      napi_set_element(e, result, i, item);
    }
  }
  for (uint32_t i = 0; i < n_out; i++) if (outs[i] != NULL) F(ReleaseValue, void, OrtValue *)(outs[i]);
  return result;
}

NAPI_MODULE_INIT () {
  napi_property_descriptor props[] = {
    { "init", NULL, init, NULL, NULL, NULL, napi_default, NULL },
    { "create", NULL, create, NULL, NULL, NULL, napi_default, NULL },
    { "run", NULL, run, NULL, NULL, NULL, napi_default, NULL },
    { "release", NULL, release, NULL, NULL, NULL, napi_default, NULL },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
