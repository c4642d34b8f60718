//! Compiles the C interface to hnswlib (header-only C++, vendored unmodified in
//! `third_party/hnswlib`).

fn main() {
    println!("cargo:rerun-if-changed=cpp/hnsw_graph.cpp");
    println!("cargo:rerun-if-changed=third_party/hnswlib/hnswlib");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("cpp/hnsw_graph.cpp")
        .include("third_party/hnswlib")
        // The graph walk is the hot loop of approximate search: optimised in every profile.
        // No target-specific flags: distances come from the Rust kernels picked at run time.
        .opt_level(3)
        // hnswlib's own headers warn (unused parameters); our file is checked with -Wall -Werror
        // in `make lint`, with hnswlib as a system include.
        .warnings(false)
        .compile("hnsw_graph");
}
