/*
 * A stand-in for libcuda.so.1 with the entry points the koffi driver binds, working on host
 * memory, so that the bindings' marshalling (out-parameters, 64-bit device pointers, strings,
 * the kernelParams pointer array) is tested where there is no GPU. "Device" pointers are host
 * addresses. cuLaunchKernel records what it was given; fake_* functions read the record back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char module_text[1 << 16];
static char function_name[256];
static unsigned launch_dims[7];
static uint64_t launch_args[32];
static unsigned launch_arg_bytes[32];
static int launch_arg_count;
static int shared_attribute;

int cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
int cuDeviceGetCount(int *count) { *count = 1; return 0; }
int cuDeviceGet(int *device, int ordinal) { *device = ordinal; return ordinal == 0 ? 0 : 101; }
int cuDeviceGetAttribute(int *value, int attrib, int dev) {
  (void)dev;
  *value = attrib == 75 ? 9 : attrib == 76 ? 0 : -1;
  return 0;
}
static int retained;
int cuDevicePrimaryCtxRetain(void **ctx, int dev) { *ctx = (void *)0x5eed; retained++; return dev == 0 ? 0 : 101; }
int cuDevicePrimaryCtxRelease_v2(int dev) { retained--; return dev == 0 ? 0 : 101; }
int cuCtxSetCurrent(void *ctx) { return ctx == (void *)0x5eed ? 0 : 201; }
int fake_retained(void) { return retained; }

int cuModuleLoadData(void **module, const char *image) {
  strncpy(module_text, image, sizeof module_text - 1);
  *module = (void *)module_text;
  return 0;
}
int cuModuleGetFunction(void **fn, void *module, const char *name) {
  if (module != (void *)module_text) return 400;
  if (!strstr(module_text, name)) return 500; /* CUDA_ERROR_NOT_FOUND */
  strncpy(function_name, name, sizeof function_name - 1);
  *fn = (void *)function_name;
  return 0;
}
int unloaded;
int cuModuleUnload(void *module) {
  if (module != (void *)module_text) return 400;
  unloaded++;
  return 0;
}
int fake_unloaded(void) { return unloaded; }
int cuFuncSetAttribute(void *fn, int attrib, int value) {
  (void)fn;
  if (attrib == 8) shared_attribute = value;
  return 0;
}
/*
 * Asynchronous host-to-device copies read their source late, when the next stream operation (or a
 * synchronisation) runs, as a GPU's copy engine may: a caller that reuses the source before then
 * gets the reused bytes.
 */
static struct { uint64_t dst; const void *src; size_t n; } pending[4096];
static int npending;
static int async_copies;
static void flush(void) {
  for (int i = 0; i < npending; i++) memcpy((void *)(uintptr_t)pending[i].dst, pending[i].src, pending[i].n);
  npending = 0;
}
int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *stream) {
  if (stream) return 1;
  if (npending == 4096) flush();
  pending[npending].dst = dst;
  pending[npending].src = src;
  pending[npending].n = n;
  npending++;
  async_copies++;
  return 0;
}
int fake_async_copies(void) { return async_copies; }
static int pinned_live;
int cuMemAllocHost_v2(void **p, size_t bytes) { *p = malloc(bytes); pinned_live++; return *p ? 0 : 2; }
int cuMemFreeHost(void *p) { flush(); free(p); pinned_live--; return 0; }
int fake_pinned_live(void) { return pinned_live; }
int cuMemAlloc_v2(uint64_t *ptr, size_t bytes) { *ptr = (uint64_t)(uintptr_t)malloc(bytes); return *ptr ? 0 : 2; }
int cuMemFree_v2(uint64_t ptr) { free((void *)(uintptr_t)ptr); return 0; }
static int sync_error;
void fake_set_sync_error(int e) { sync_error = e; }
int cuCtxSynchronize(void) { flush(); return sync_error; }
int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t n) { flush(); memcpy((void *)(uintptr_t)dst, src, n); return 0; }
int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t n) { flush(); memcpy(dst, (void *)(uintptr_t)src, n); return 0; }
int cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t n) {
  flush();
  memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
  return 0;
}
int cuMemsetD8_v2(uint64_t dst, unsigned char v, size_t n) { flush(); memset((void *)(uintptr_t)dst, v, n); return 0; }

/* The test says how wide each argument is (the real driver knows it from the kernel's signature). */
void fake_expect_args(int count, const unsigned *bytes) {
  launch_arg_count = count;
  memcpy(launch_arg_bytes, bytes, sizeof(unsigned) * (size_t)count);
}

int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, void *stream, void **params, void **extra) {
  if (f != (void *)function_name || stream || extra) return 1;
  flush();
  unsigned dims[7] = {gx, gy, gz, bx, by, bz, shared};
  memcpy(launch_dims, dims, sizeof dims);
  for (int i = 0; i < launch_arg_count; i++) {
    launch_args[i] = 0;
    memcpy(&launch_args[i], params[i], launch_arg_bytes[i]);
  }
  return 0;
}

int cuGetErrorName(int error, const char **name) {
  *name = error == 500 ? "CUDA_ERROR_NOT_FOUND" : "CUDA_ERROR_UNKNOWN";
  return 0;
}

const char *fake_function(void) { return function_name; }
int fake_shared_attribute(void) { return shared_attribute; }
void fake_launch(unsigned *dims, uint64_t *args) {
  memcpy(dims, launch_dims, sizeof launch_dims);
  memcpy(args, launch_args, sizeof(uint64_t) * (size_t)launch_arg_count);
}
