fn main() {
    // Only the Node binding needs napi's link arguments; the core tests link without them.
    if std::env::var_os("CARGO_FEATURE_NAPI").is_some() {
        napi_build::setup();
    }
}
