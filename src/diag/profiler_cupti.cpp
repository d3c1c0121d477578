// Profiler over the CUPTI Activity API (CUDA builds with CUPTI), and its stand-in for builds without.
//
// CUPTI hands activity buffers to two C callbacks without a user pointer, so the collector they
// fill is process-wide state: one Profiler records at a time, enforced in start(). The same code
// runs inside libfathom_inject.so (src/inject/), which is why it needs only CUPTI: no CUDA
// runtime, no engine.
//
// Recorded kinds: CONCURRENT_KERNEL (does not serialize kernels, unlike KIND_KERNEL), MEMCPY,
// MEMSET, SYNCHRONIZATION, DEVICE (the GPU's name and limits), MARKER (NVTX ranges: a START record
// with the name and an END record with the same id), and every runtime API call (RUNTIME; the
// analysis keeps the calls it knows: allocations, syncs, copies, launches, graph launches).
// NVTX calls reach CUPTI only through NVTX's injection hook: NVTX_INJECTION64_PATH must name
// libcupti before the process's first NVTX call (enable_nvtx_injection; `fathom profile` sets it
// for the engine and for a profiled command).
// Graph kernel nodes arrive as ordinary kernel records with graph_id set; GRAPH_TRACE is not
// enabled because it would replace them with one record per graph launch.
#include "fathom/profiler.h"

#include "fathom/error.h"

#ifdef FATHOM_HAVE_CUPTI

#include <cupti.h>
#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace fathom {
namespace {

#define CUPTI_CHECK(expr)                                                                   \
  do {                                                                                      \
    CUptiResult r_ = (expr);                                                                \
    if (r_ != CUPTI_SUCCESS) {                                                              \
      const char* s_ = nullptr;                                                             \
      cuptiGetResultString(r_, &s_);                                                        \
      fail("profiler: ", #expr, " failed: ", s_ ? s_ : "unknown CUPTI error", " (", int(r_), ")"); \
    }                                                                                       \
  } while (0)


const CUpti_ActivityKind kKinds[] = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET,
    CUPTI_ACTIVITY_KIND_SYNCHRONIZATION,
};

constexpr size_t kBufferBytes = size_t(8) << 20;

// "cudaStreamSynchronize_ptsz_v7000" -> "cudaStreamSynchronize"; "__cudaLaunchKernel_v13000" ->
// "cudaLaunchKernel".
std::string plain_api_name(std::string s) {
  const size_t v = s.rfind("_v");
  if (v != std::string::npos && v + 2 < s.size() &&
      s.find_first_not_of("0123456789", v + 2) == std::string::npos)
    s.resize(v);
  for (const char* suffix : {"_ptsz", "_ptds"}) {
    const size_t n = std::strlen(suffix);
    if (s.size() > n && s.compare(s.size() - n, n, suffix) == 0) s.resize(s.size() - n);
  }
  while (!s.empty() && s[0] == '_') s.erase(0, 1);
  return s;
}

std::string demangle(const char* mangled) {
  if (!mangled) return "(unnamed kernel)";
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || !d) return mangled;  // extern "C" kernels are not mangled
  std::string s(d);
  std::free(d);
  return s;
}

CopyKind copy_kind(uint8_t k) {
  switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA: return CopyKind::H2D;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH: return CopyKind::D2H;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD: case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA: return CopyKind::D2D;
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return CopyKind::H2H;
    default: return CopyKind::OTHER;
  }
}

SyncKind sync_kind(CUpti_ActivitySynchronizationType t) {
  switch (t) {
    case CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE: return SyncKind::EVENT;
    case CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT: return SyncKind::STREAM_WAIT_EVENT;
    case CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE: return SyncKind::STREAM;
    case CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE: return SyncKind::CONTEXT;
    default: return SyncKind::OTHER;
  }
}

// What the buffer callback fills. Process-wide because CUPTI's callbacks are (see the top).
struct Collector {
  std::mutex mu;
  Trace trace;
  std::unordered_map<std::string, std::string> demangled;   // mangled -> demangled
  std::unordered_map<uint32_t, std::string> api_names;      // cbid -> plain name
  std::unordered_map<uint32_t, RangeEvent> open_ranges;     // NVTX marker id -> range so far
  std::atomic<bool> busy{false};                            // a Profiler is recording
  bool callbacks_registered = false;

  void add(const CUpti_Activity* rec) {
    switch (rec->kind) {
      case CUPTI_ACTIVITY_KIND_KERNEL:
      case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
        KernelEvent e;
        const std::string mangled = k->name ? k->name : "";
        auto it = demangled.find(mangled);
        if (it == demangled.end()) it = demangled.emplace(mangled, demangle(k->name)).first;
        e.name = it->second;
        e.start_ns = k->start;
        e.end_ns = k->end;
        e.stream = k->streamId;
        e.grid[0] = k->gridX; e.grid[1] = k->gridY; e.grid[2] = k->gridZ;
        e.block[0] = k->blockX; e.block[1] = k->blockY; e.block[2] = k->blockZ;
        e.registers = k->registersPerThread;
        e.static_smem = k->staticSharedMemory;
        e.dynamic_smem = k->dynamicSharedMemory;
        e.graph_id = k->graphId;
        e.correlation = k->correlationId;
        trace.kernels.push_back(std::move(e));
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMCPY: {
        auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
        MemcpyEvent e;
        e.kind = copy_kind(m->copyKind);
        e.bytes = m->bytes;
        e.start_ns = m->start;
        e.end_ns = m->end;
        e.stream = m->streamId;
        e.pageable = m->srcKind == CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE ||
                     m->dstKind == CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE;
        trace.memcpys.push_back(e);
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMSET: {
        auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
        trace.memsets.push_back(MemsetEvent{m->bytes, m->start, m->end, m->streamId});
        break;
      }
      case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
        auto* s = reinterpret_cast<const CUpti_ActivitySynchronization2*>(rec);
        trace.syncs.push_back(SyncEvent{sync_kind(s->type), s->start, s->end, s->streamId});
        break;
      }
      case CUPTI_ACTIVITY_KIND_RUNTIME: {
        auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(rec);
        auto it = api_names.find(a->cbid);
        if (it == api_names.end()) {
          const char* n = nullptr;
          cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &n);
          it = api_names.emplace(a->cbid, plain_api_name(n ? n : "unknown")).first;
        }
        trace.api.push_back(ApiEvent{it->second, a->start, a->end, a->correlationId});
        break;
      }
      case CUPTI_ACTIVITY_KIND_MARKER: {
        auto* m = reinterpret_cast<const CUpti_ActivityMarker2*>(rec);
        if (m->flags & CUPTI_ACTIVITY_FLAG_MARKER_START) {
          RangeEvent& r = open_ranges[m->id];
          r.name = m->name ? m->name : "";
          r.domain = m->domain ? m->domain : "";
          r.start_ns = m->timestamp;
        } else if (m->flags & CUPTI_ACTIVITY_FLAG_MARKER_END) {
          auto it = open_ranges.find(m->id);
          if (it == open_ranges.end()) break;
          it->second.end_ns = m->timestamp;
          trace.ranges.push_back(std::move(it->second));
          open_ranges.erase(it);
        }
        break;
      }
      case CUPTI_ACTIVITY_KIND_DEVICE: {
        auto* d = reinterpret_cast<const CUpti_ActivityDevice5*>(rec);
        if (trace.device.empty() && d->name) trace.device = d->name;
        if (!trace.limits.known()) {
          DeviceLimits& l = trace.limits;
          l.cc_major = int(d->computeCapabilityMajor);
          l.cc_minor = int(d->computeCapabilityMinor);
          l.sm_count = int(d->numMultiprocessors);
          l.warp_size = d->numThreadsPerWarp ? int(d->numThreadsPerWarp) : 32;
          l.max_threads_per_sm = int(d->maxWarpsPerMultiprocessor) * l.warp_size;
          l.max_blocks_per_sm = int(d->maxBlocksPerMultiprocessor);
          l.regs_per_sm = int(d->maxRegistersPerMultiprocessor);
          l.regs_per_block = int(d->maxRegistersPerBlock);
          l.smem_per_sm = int(d->maxSharedMemoryPerMultiprocessor);
          // CUPTI gives no reserve nor opt-in limit: 1 KiB per block on sm_80+, the rest opt-in.
          l.reserved_smem_per_block = l.cc_major >= 8 ? 1024 : 0;
          l.smem_per_block_optin = l.smem_per_sm - l.reserved_smem_per_block;
        }
        break;
      }
      default:
        break;
    }
  }
};

Collector& collector() {
  // Leaked on purpose: CUPTI may deliver a last buffer from its own thread while static
  // destructors run at exit (the injection library flushes from atexit).
  static Collector* c = new Collector;
  return *c;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream_id, uint8_t* buffer, size_t, size_t valid) {
  Collector& c = collector();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    CUpti_Activity* rec = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) c.add(rec);
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream_id, &dropped) == CUPTI_SUCCESS)
      c.trace.dropped_records += dropped;
  }
  std::free(buffer);
}

uint64_t now_ns() {
  uint64_t t = 0;
  cuptiGetTimestamp(&t);
  return t;
}

}  // namespace

struct Profiler::Impl {
  bool recording = false;
  bool owns_collector = false;   // this Profiler holds the process-wide recording slot
  std::vector<StepMark> marks;
  uint64_t begin_ns = 0, end_ns = 0;
};

Profiler::Profiler() : impl_(std::make_unique<Impl>()) {}

Profiler::~Profiler() {
  try {
    stop();
  } catch (...) {
    // A destructor must not throw; a failed flush only loses records.
  }
  if (impl_->owns_collector) collector().busy = false;
}

bool Profiler::available(std::string* why) {
  if (why) why->clear();
  return true;
}

void Profiler::start() {
  Impl& m = *impl_;
  FATHOM_CHECK(!m.recording, "profiler: start() while already recording");
  Collector& c = collector();
  if (!m.owns_collector) {
    bool expected = false;
    FATHOM_CHECK(c.busy.compare_exchange_strong(expected, true),
                 "profiler: another Profiler is recording in this process (CUPTI is process-wide)");
    m.owns_collector = true;
  }
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.trace = Trace{};
    c.open_ranges.clear();
  }
  m.marks.clear();
  if (!c.callbacks_registered) {
    CUPTI_CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    c.callbacks_registered = true;
  }
  // DEVICE records come when a context is created; enabling it later is harmless (no record).
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_DEVICE);
  for (CUpti_ActivityKind k : kKinds) {
    const CUptiResult r = cuptiActivityEnable(k);
    if (r != CUPTI_SUCCESS) {
      const char* s = nullptr;
      cuptiGetResultString(r, &s);
      fail("profiler: cannot enable CUPTI activity kind ", int(k), ": ", s ? s : "unknown error",
           " (is a GPU driver present, and no other profiler such as nsys/ncu attached?)");
    }
  }
  // Every runtime call (the analysis ignores names it does not know). The fine-grained
  // cuptiActivityEnableRuntimeApi selection of kRuntimeApis alone produced no runtime records in
  // the engine profile on the H200 (CUDA 13.0, driver 580): no launch or graph-launch counts.
  CUPTI_CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME));
  // NVTX ranges: optional (no record unless NVTX is injected into CUPTI, see the top).
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MARKER);
  m.begin_ns = now_ns();
  m.recording = true;
}

void Profiler::mark_step(const std::string& phase) {
  Impl& m = *impl_;
  FATHOM_CHECK(m.recording, "profiler: mark_step() outside start()/stop()");
  m.marks.push_back(StepMark{now_ns(), phase});
}

void Profiler::stop() {
  Impl& m = *impl_;
  if (!m.recording) return;
  m.end_ns = now_ns();
  m.recording = false;
  // Forced flush: also hands over buffers that are not full yet.
  CUptiResult flush = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  for (CUpti_ActivityKind k : kKinds) cuptiActivityDisable(k);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_RUNTIME);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MARKER);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_DEVICE);
  CUPTI_CHECK(flush);
  CUPTI_CHECK(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
}

Trace Profiler::take() {
  Impl& m = *impl_;
  FATHOM_CHECK(!m.recording, "profiler: take() before stop()");
  Collector& c = collector();
  Trace t;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    t = std::move(c.trace);
    c.trace = Trace{};
  }
  t.begin_ns = m.begin_ns;
  t.end_ns = m.end_ns;
  t.steps = std::move(m.marks);
  {
    // Ranges still open at stop(): up to the end of the window.
    std::lock_guard<std::mutex> lock(c.mu);
    for (auto& [id, r] : c.open_ranges) {
      r.end_ns = std::max(r.start_ns, t.end_ns);
      t.ranges.push_back(std::move(r));
    }
    c.open_ranges.clear();
  }
  m.marks.clear();
  if (m.owns_collector) {
    c.busy = false;
    m.owns_collector = false;
  }
  return t;
}

std::string cupti_library_path() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&cuptiGetVersion), &info) == 0 || !info.dli_fname) return "";
  return info.dli_fname;
}

std::string enable_nvtx_injection() {
  if (const char* cur = std::getenv("NVTX_INJECTION64_PATH"); cur && *cur) return cur;
  const std::string lib = cupti_library_path();
  if (!lib.empty()) ::setenv("NVTX_INJECTION64_PATH", lib.c_str(), 0);
  return lib;
}

}  // namespace fathom

#else  // !FATHOM_HAVE_CUPTI

namespace fathom {

struct Profiler::Impl {};

Profiler::Profiler() : impl_(std::make_unique<Impl>()) {}
Profiler::~Profiler() = default;

bool Profiler::available(std::string* why) {
#ifdef FATHOM_HAVE_CUDA
  if (why) *why = "this fathom was built without CUPTI (the CUDA toolkit had no CUDA::cupti)";
#else
  if (why) *why = "this fathom was built without CUDA (FATHOM_ENABLE_CUDA=OFF or no nvcc)";
#endif
  return false;
}

void Profiler::start() {
  std::string why;
  available(&why);
  fail("profiler: ", why, "; rebuild with FATHOM_ENABLE_CUDA=ON and CUPTI");
}
void Profiler::mark_step(const std::string&) { fail("profiler: built without CUDA"); }
void Profiler::stop() {}
Trace Profiler::take() { return Trace{}; }

std::string cupti_library_path() { return ""; }
std::string enable_nvtx_injection() { return ""; }

}  // namespace fathom

#endif
