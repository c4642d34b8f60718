// A C interface to hnswlib's HierarchicalNSW for ambervault's `vectors` crate.
//
// The distance function comes from Rust (its SIMD kernels, picked at run time), so this file
// is compiled for the baseline target. Every entry point catches C++ exceptions and reports
// them through `err`: none may cross into Rust. The snapshot format (`av_graph_save` /
// `av_graph_load`) is ours, not hnswlib's file format, which only writes to a path; loading
// checks every link so that a damaged snapshot is refused instead of read out of bounds.

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <queue>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "hnswlib/hnswlib.h"

// Snapshots are the graph's memory as it is; the format is defined as little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the HNSW snapshot format assumes a little-endian target"
#endif

namespace {

using Index = hnswlib::HierarchicalNSW<float>;
using hnswlib::tableint;

typedef float (*DistanceFn)(const void*, const void*, const void*);
typedef int (*AcceptFn)(void* context, uint64_t label);

// The element size and distance the Rust side chose for the collection's spec.
class CallerSpace : public hnswlib::SpaceInterface<float> {
 public:
  CallerSpace(size_t data_size, DistanceFn distance, const void* param)
      : data_size_(data_size), distance_(distance), param_(const_cast<void*>(param)) {}
  size_t get_data_size() override { return data_size_; }
  hnswlib::DISTFUNC<float> get_dist_func() override { return distance_; }
  void* get_dist_func_param() override { return param_; }

 private:
  size_t data_size_;
  DistanceFn distance_;
  void* param_;
};

class CallerFilter : public hnswlib::BaseFilterFunctor {
 public:
  CallerFilter(AcceptFn accept, void* context) : accept_(accept), context_(context) {}
  bool operator()(hnswlib::labeltype label) override { return accept_(context_, label) != 0; }

 private:
  AcceptFn accept_;
  void* context_;
};

void report(char* err, size_t err_len, const char* what) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, what, err_len - 1);
  err[err_len - 1] = '\0';
}

// Runs `body`, turning a C++ exception into `err` and the `failed` result: none may unwind
// into Rust.
template <typename T, typename Body>
T guarded(char* err, size_t err_len, T failed, Body body) {
  try {
    return body();
  } catch (const std::exception& e) {
    report(err, err_len, e.what());
  } catch (...) {
    report(err, err_len, "unknown error");
  }
  return failed;
}

const char MAGIC[8] = {'A', 'V', 'H', 'N', 'S', 'W', '0', '1'};
// Header: the magic, then these u64 fields in order.
enum Field { DATA_SIZE, M, EF_CONSTRUCTION, COUNT, MAX_LEVEL_PLUS_ONE, ENTRY, FIELDS };
const size_t HEADER_BYTES = sizeof(MAGIC) + FIELDS * sizeof(uint64_t);
// Levels above this are not produced by the level distribution for any realistic M and size.
const int MAX_LEVEL = 64;

typedef int (*ReadFn)(void* context, uint8_t* into, size_t n);
typedef int (*WriteFn)(void* context, const uint8_t* from, size_t n);

// Pulls exactly the bytes asked for from the caller's stream.
class Reader {
 public:
  Reader(ReadFn read, void* context) : read_(read), context_(context) {}
  void into(void* to, size_t n) {
    if (n > 0 && read_(context_, (uint8_t*)to, n) != 0) throw std::runtime_error("the snapshot ends early");
  }
  uint64_t u64() {
    uint64_t v;
    into(&v, sizeof v);
    return v;
  }
  uint32_t u32() {
    uint32_t v;
    into(&v, sizeof v);
    return v;
  }

 private:
  ReadFn read_;
  void* context_;
};

// Pushes bytes to the caller's stream.
class Writer {
 public:
  Writer(WriteFn write, void* context) : write_(write), context_(context) {}
  void from(const void* at, size_t n) {
    if (n > 0 && write_(context_, (const uint8_t*)at, n) != 0) throw std::runtime_error("the snapshot could not be written");
  }

 private:
  WriteFn write_;
  void* context_;
};

// Asks Linux to back the graph's level-0 table (vectors and links, the memory every search
// walks at random) with huge pages where whole ones fit: each visited node otherwise costs a
// TLB miss as well as a cache miss. Advice only; where it is refused nothing changes.
void advise_huge_pages(const Index& g) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = 2u << 20;
  uintptr_t start = ((uintptr_t)g.data_level0_memory_ + huge - 1) & ~(huge - 1);
  uintptr_t end = ((uintptr_t)g.data_level0_memory_ + g.max_elements_ * g.size_data_per_element_) & ~(huge - 1);
  if (end > start) madvise((void*)start, end - start, MADV_HUGEPAGE);
#else
  (void)g;
#endif
}

}  // namespace

struct av_graph {
  // Declared before the index, so it is destroyed after it.
  CallerSpace space;
  std::unique_ptr<Index> index;

  av_graph(size_t data_size, DistanceFn distance, const void* param)
      : space(data_size, distance, param) {}

  bool contains(uint64_t label) const {
    std::unique_lock<std::mutex> lock(index->label_lookup_lock);
    auto found = index->label_lookup_.find(label);
    return found != index->label_lookup_.end() && !index->isMarkedDeleted(found->second);
  }

  // Checks a loaded graph's links: counts, neighbour ids and levels, and the entry point.
  void validate() const {
    const Index& g = *index;
    size_t count = g.cur_element_count;
    for (size_t i = 0; i < count; i++) {
      int level = g.element_levels_[i];
      for (int l = 0; l <= level; l++) {
        hnswlib::linklistsizeint* list = g.get_linklist_at_level((tableint)i, l);
        size_t size = g.getListCount(list);
        if (size > (l == 0 ? g.maxM0_ : g.maxM_)) throw std::runtime_error("a link list is too long");
        const tableint* links = (const tableint*)(list + 1);
        for (size_t j = 0; j < size; j++) {
          if (links[j] >= count || g.element_levels_[links[j]] < l)
            throw std::runtime_error("a link points outside the graph");
        }
      }
    }
    if (count > 0 && (g.enterpoint_node_ >= count || g.element_levels_[g.enterpoint_node_] != g.maxlevel_))
      throw std::runtime_error("the entry point is not the top node");
  }
};

extern "C" {

// A new, empty graph with room for `capacity` elements of `data_size` bytes.
av_graph* av_graph_new(size_t data_size, DistanceFn distance, const void* param, size_t capacity,
                       size_t m, size_t ef_construction, char* err, size_t err_len) {
  return guarded(err, err_len, static_cast<av_graph*>(nullptr), [&]() -> av_graph* {
    std::unique_ptr<av_graph> graph(new av_graph(data_size, distance, param));
    graph->index.reset(new Index(&graph->space, capacity, m, ef_construction));
    advise_huge_pages(*graph->index);
    return graph.release();
  });
}

void av_graph_free(av_graph* graph) { delete graph; }

// Room for `capacity` elements; not safe while other calls run on the graph.
int av_graph_reserve(av_graph* graph, size_t capacity, char* err, size_t err_len) {
  return guarded(err, err_len, -1, [&]() -> int {
    if (capacity > graph->index->max_elements_) {
      graph->index->resizeIndex(capacity);
      advise_huge_pages(*graph->index);
    }
    return 0;
  });
}

size_t av_graph_capacity(const av_graph* graph) { return graph->index->max_elements_; }

// Elements in the graph, removed ones included.
size_t av_graph_count(const av_graph* graph) { return graph->index->cur_element_count; }

// Removed elements still in the graph (searches step over them).
size_t av_graph_removed(const av_graph* graph) { return graph->index->num_deleted_; }

int av_graph_contains(const av_graph* graph, uint64_t label) { return graph->contains(label) ? 1 : 0; }

// Adds `label` or, when present (even removed), replaces its vector. Safe to call from several
// threads at once for different labels.
int av_graph_add(av_graph* graph, uint64_t label, const void* data, char* err, size_t err_len) {
  return guarded(err, err_len, -1, [&]() -> int {
    graph->index->addPoint(data, label);
    return 0;
  });
}

// Marks `label` removed (it must be present and live).
int av_graph_remove(av_graph* graph, uint64_t label, char* err, size_t err_len) {
  return guarded(err, err_len, -1, [&]() -> int {
    graph->index->markDelete(label);
    return 0;
  });
}

// The up-to-`k` nearest live elements to `query` that `accept` (when not null) lets through,
// nearest first, searching with a candidate list of `ef`. Returns how many were written, or
// SIZE_MAX on error. Several threads may search at once.
size_t av_graph_search(const av_graph* graph, const void* query, size_t k, size_t ef, AcceptFn accept,
                       void* context, uint64_t* labels, float* distances, char* err, size_t err_len) {
  return guarded(err, err_len, SIZE_MAX, [&]() -> size_t {
    const Index& g = *graph->index;
    if (g.cur_element_count == 0 || k == 0) return 0;
    // The greedy descent through the upper levels, as hnswlib's searchKnn does; done here so
    // that `ef` is this call's own rather than the index's shared setting.
    tableint current = g.enterpoint_node_;
    float nearest = g.fstdistfunc_(query, g.getDataByInternalId(current), g.dist_func_param_);
    for (int level = g.maxlevel_; level > 0; level--) {
      bool moved = true;
      while (moved) {
        moved = false;
        hnswlib::linklistsizeint* list = g.get_linklist(current, level);
        size_t size = g.getListCount(list);
        const tableint* links = (const tableint*)(list + 1);
        for (size_t i = 0; i < size; i++) {
          float d = g.fstdistfunc_(query, g.getDataByInternalId(links[i]), g.dist_func_param_);
          if (d < nearest) {
            nearest = d;
            current = links[i];
            moved = true;
          }
        }
      }
    }
    CallerFilter filter(accept, context);
    hnswlib::BaseFilterFunctor* allowed = accept != nullptr ? &filter : nullptr;
    size_t width = ef > k ? ef : k;
    auto top = (g.num_deleted_ == 0 && allowed == nullptr)
                   ? g.searchBaseLayerST<true>(current, query, width, allowed)
                   : g.searchBaseLayerST<false>(current, query, width, allowed);
    while (top.size() > k) top.pop();
    size_t n = top.size();
    for (size_t i = n; i > 0; i--) {
      labels[i - 1] = g.getExternalLabel(top.top().second);
      distances[i - 1] = top.top().first;
      top.pop();
    }
    return n;
  });
}

// Bytes the graph holds in memory (its element table, upper-level links and label map).
size_t av_graph_memory(const av_graph* graph) {
  const Index& g = *graph->index;
  size_t bytes = g.max_elements_ * (g.size_data_per_element_ + sizeof(void*) + sizeof(int) + sizeof(std::mutex));
  for (size_t i = 0; i < g.cur_element_count; i++) bytes += g.element_levels_[i] * g.size_links_per_element_;
  // The label map's nodes and buckets, and one visited list (two bytes per element).
  bytes += g.label_lookup_.size() * (sizeof(hnswlib::labeltype) + sizeof(tableint) + 2 * sizeof(void*));
  bytes += g.max_elements_ * sizeof(unsigned short);
  return bytes;
}

// Writes the graph to the caller's stream (see docs/format.md). Not safe while the graph
// changes.
int av_graph_save(const av_graph* graph, WriteFn write, void* context, char* err, size_t err_len) {
  return guarded(err, err_len, -1, [&]() -> int {
    const Index& g = *graph->index;
    Writer out(write, context);
    uint64_t header[FIELDS];
    header[DATA_SIZE] = g.data_size_;
    header[M] = g.M_;
    header[EF_CONSTRUCTION] = g.ef_construction_;
    header[COUNT] = g.cur_element_count;
    header[MAX_LEVEL_PLUS_ONE] = (uint64_t)(g.maxlevel_ + 1);
    header[ENTRY] = g.enterpoint_node_;
    out.from(MAGIC, sizeof MAGIC);
    out.from(header, sizeof header);
    out.from(g.data_level0_memory_, g.cur_element_count * g.size_data_per_element_);
    for (size_t i = 0; i < g.cur_element_count; i++) {
      uint32_t level = (uint32_t)g.element_levels_[i];
      out.from(&level, sizeof level);
      out.from(g.linkLists_[i], level * g.size_links_per_element_);
    }
    return 0;
  });
}

// Whether `bytes` start as a snapshot of this format (rather than another engine's).
int av_graph_is_snapshot(const uint8_t* bytes, size_t len) {
  return len >= sizeof MAGIC && std::memcmp(bytes, MAGIC, sizeof MAGIC) == 0 ? 1 : 0;
}

// A graph from a snapshot written by `av_graph_save`, read from the caller's stream (the
// level-0 table straight into the graph's memory), for elements of `data_size` bytes, with
// room for at least `capacity` elements. Refuses (null, with `err`) anything inconsistent;
// the caller checks that the stream ended there.
av_graph* av_graph_load(ReadFn read, void* context, size_t data_size, DistanceFn distance, const void* param,
                        size_t capacity, char* err, size_t err_len) {
  return guarded(err, err_len, static_cast<av_graph*>(nullptr), [&]() -> av_graph* {
    Reader in(read, context);
    char magic[sizeof MAGIC];
    in.into(magic, sizeof magic);
    if (std::memcmp(magic, MAGIC, sizeof MAGIC) != 0) throw std::runtime_error("not an HNSW snapshot");
    uint64_t header[FIELDS];
    for (uint64_t& field : header) field = in.u64();
    if (header[DATA_SIZE] != data_size) throw std::runtime_error("the element size differs from the collection's");
    if (header[M] < 2 || header[M] > 10000 || header[EF_CONSTRUCTION] > (1u << 30))
      throw std::runtime_error("bad graph parameters");
    size_t count = header[COUNT];
    if (count > UINT32_MAX || header[MAX_LEVEL_PLUS_ONE] > MAX_LEVEL + 1 ||
        (count == 0) != (header[MAX_LEVEL_PLUS_ONE] == 0))
      throw std::runtime_error("bad graph size");
    std::unique_ptr<av_graph> graph(new av_graph(data_size, distance, param));
    size_t room = capacity > count ? capacity : count;
    graph->index.reset(new Index(&graph->space, room > 1 ? room : 1, header[M], header[EF_CONSTRUCTION]));
    Index& g = *graph->index;
    advise_huge_pages(g);
    size_t level0 = count * g.size_data_per_element_;
    if (level0 / g.size_data_per_element_ != count) throw std::runtime_error("bad graph size");
    in.into(g.data_level0_memory_, level0);
    for (size_t i = 0; i < count; i++) {
      uint32_t level = in.u32();
      if (level > (uint32_t)MAX_LEVEL) throw std::runtime_error("bad node level");
      size_t links = level * g.size_links_per_element_;
      g.element_levels_[i] = (int)level;
      g.linkLists_[i] = nullptr;
      if (links > 0) {
        g.linkLists_[i] = (char*)malloc(links);
        if (g.linkLists_[i] == nullptr) throw std::bad_alloc();
        in.into(g.linkLists_[i], links);
      }
      // Counted as it goes, so that the index's destructor frees exactly what was allocated.
      g.cur_element_count = i + 1;
    }
    g.maxlevel_ = (int)header[MAX_LEVEL_PLUS_ONE] - 1;
    g.enterpoint_node_ = count > 0 ? (tableint)header[ENTRY] : (tableint)-1;
    if (count > 0 && header[ENTRY] >= count) throw std::runtime_error("the entry point is outside the graph");
    graph->validate();
    g.label_lookup_.reserve(count);
    for (size_t i = 0; i < count; i++) {
      if (!g.label_lookup_.emplace(g.getExternalLabel((tableint)i), (tableint)i).second)
        throw std::runtime_error("a label appears twice");
      if (g.isMarkedDeleted((tableint)i)) g.num_deleted_ += 1;
    }
    return graph.release();
  });
}

}  // extern "C"
