// NVTX ranges that `fathom profile` turns into token steps (see profiler.h): the engine wraps each
// public prefill/decode call in one, named "prefill" or "decode step N" (N: the token's position),
// in the NVTX domain "fathom". NVTX3 is header-only (CUDA toolkit); until a tool injects itself
// (NVTX_INJECTION64_PATH, set by `fathom profile`) a range costs a call through a null-checked
// function pointer. Builds without CUDA get a no-op.
#pragma once

#if defined(FATHOM_HAVE_CUDA) && __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define FATHOM_HAVE_NVTX 1
#endif

#include <cstdio>

namespace fathom {

class NvtxRange {
 public:
  // "name" when n < 0, else "name n".
  explicit NvtxRange(const char* name, long long n = -1) {
#ifdef FATHOM_HAVE_NVTX
    char buf[64];
    if (n >= 0) std::snprintf(buf, sizeof buf, "%s %lld", name, n);
    nvtxEventAttributes_t a = {};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = n >= 0 ? buf : name;
    nvtxDomainRangePushEx(domain(), &a);
#else
    (void)name, (void)n;
#endif
  }
  ~NvtxRange() {
#ifdef FATHOM_HAVE_NVTX
    nvtxDomainRangePop(domain());
#endif
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;

 private:
#ifdef FATHOM_HAVE_NVTX
  // NVTX domains are process-wide registrations: one handle for the process.
  static nvtxDomainHandle_t domain() {
    static const nvtxDomainHandle_t d = nvtxDomainCreateA("fathom");
    return d;
  }
#endif
};

}  // namespace fathom
